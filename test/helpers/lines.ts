// Splits a child process's output into lines as they arrive (meshlet's JSON log lines), for the helpers that spawn it.
import type { Readable } from 'node:stream';

/** Calls `each` with every complete line `stream` writes, in order, without its `\n`; a last line without one is not passed. */
export function onLines(stream: Readable, each: (line: string) => void): void {
  let buffered = '';
  stream.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl = buffered.indexOf('\n');
    while (nl !== -1) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      each(line);
      nl = buffered.indexOf('\n');
    }
  });
}
