// Types of the undici modules meshlet's HTTP/2 client imports one by one instead of undici's index.
declare module 'undici/lib/core/connect.js' {
  import type { buildConnector as BuildConnector } from 'undici';
  /** undici's connector factory (the one its `Client` builds from a `connect` options object). */
  const buildConnector: typeof BuildConnector;
  export default buildConnector;
}

declare module 'undici/lib/core/errors.js' {
  import type { errors as UndiciErrors } from 'undici';
  const errors: typeof UndiciErrors;
  export default errors;
}
