// Types of the undici modules meshlet imports one by one instead of undici's index (package.json has no `exports`, so Node resolves them).
declare module 'undici/lib/dispatcher/pool.js' {
  import type { Pool } from 'undici';
  const PoolClass: typeof Pool;
  export default PoolClass;
}

declare module 'undici/lib/dispatcher/client.js' {
  import type { Client } from 'undici';
  const ClientClass: typeof Client;
  export default ClientClass;
}

declare module 'undici/lib/api/api-request.js' {
  import type { Dispatcher } from 'undici';
  const request: (this: Dispatcher, opts: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;
  export default request;
}

declare module 'undici/lib/dispatcher/client-h1.js' {
  import type { Duplex } from 'node:stream';
  /** Attaches undici's HTTP/1.1 parser (`socket[kParser]`) to a connected socket. */
  const connectH1: (client: object, socket: Duplex) => unknown;
  export default connectH1;
}

declare module 'undici/lib/core/symbols.js' {
  const symbols: { readonly kParser: symbol };
  export default symbols;
}
