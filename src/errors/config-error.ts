// The error a bad config file raises: one line naming the key path (or file) and the problem.

/** A config file that cannot be used. `message` is one line; the CLI exits 2 with it. */
export class ConfigError extends Error {
  /** Dotted key path of the bad key (`upstreams.users.timeouts.connect`), or '' for the file itself. */
  readonly keyPath: string;
  constructor(keyPath: string, problem: string, file?: string) {
    const where = keyPath === '' ? '' : `${keyPath}: `;
    super(`${file === undefined ? 'config' : file}: ${where}${problem}`);
    this.name = 'ConfigError';
    this.keyPath = keyPath;
  }
}
