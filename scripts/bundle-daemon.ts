// Bundles the daemon (src/cli/daemon-main.ts and all it imports) into dist/daemon/: one module graph instead of ~200 files.
import { rmSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/**
 * Packages left out of the bundle and loaded from node_modules when first used: the gRPC admin API,
 * the etcd and Redis registries. None of them is on an idle daemon's path, and some read files
 * beside their own code (.proto files) that a bundle would not carry.
 */
export const UNBUNDLED = [
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  '@grpc/reflection',
  'grpc-health-check',
  'etcd3',
  'ioredis',
];

/**
 * undici's client-h2 requires node:http2 when undici loads; inside the bundle it gets
 * src/http2/undici-http2.ts instead (its constants, and `connect` loading node:http2 on first use),
 * so node:http2 (about 10 MiB of RSS) loads with the first HTTP/2 connection.
 */
const lazyHttp2ForUndici: Plugin = {
  name: 'lazy-http2-for-undici',
  setup(b) {
    b.onResolve({ filter: /^(node:)?http2$/ }, (args) =>
      /[\\/]node_modules[\\/]undici[\\/]/.test(args.importer)
        ? { path: join(ROOT, 'src', 'http2', 'undici-http2.ts') }
        : undefined,
    );
  },
};

/**
 * Parts of undici that undici itself requires only on first use and the daemon never or rarely
 * needs, left in node_modules: the HTTP/1.1 parsers compiled to WebAssembly (llhttp and milo, four
 * base64 modules of ~75 KiB each, of which one loads with the first upstream connection) and the
 * fetch body and FormData code (for FormData request bodies, which meshlet never sends). Inside a
 * bundle a lazy `require` still puts the module's source in the chunk, and V8 keeps a loaded
 * chunk's whole source for lazy compilation: ~0.5 MiB of idle heap. The fetch modules loaded that
 * way are a second copy of undici's web layer, which is harmless for the one thing they would do here
 * (turn a FormData body into a stream).
 */
export const UNDICI_ON_DEMAND = [
  'lib/llhttp/llhttp-wasm.js',
  'lib/llhttp/llhttp_simd-wasm.js',
  'lib/milo/simd.js',
  'lib/milo/no-simd.js',
  'lib/web/fetch/body.js',
  'lib/web/fetch/formdata.js',
  'lib/web/webidl/index.js',
];

const undiciOnDemand: Plugin = {
  name: 'undici-on-demand',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/(llhttp|milo|web)\// }, (args) => {
      const root = /^(.*[\\/]node_modules[\\/]undici)[\\/]/.exec(args.importer)?.[1];
      if (root === undefined) return undefined;
      let rel = relative(root, join(dirname(args.importer), args.path))
        .split(sep)
        .join('/');
      if (!rel.endsWith('.js') && UNDICI_ON_DEMAND.includes(`${rel}/index.js`)) rel = `${rel}/index.js`;
      if (!rel.endsWith('.js')) rel = `${rel}.js`;
      return UNDICI_ON_DEMAND.includes(rel) ? { path: `undici/${rel}`, external: true } : undefined;
    });
  },
};

/**
 * Node's built-in modules, imported through `require`: an ESM `import` of a built-in builds a
 * facade that reads every export, and some exports are lazy getters (`http.WebSocket` loads Node's
 * own copy of undici with http2, zlib and web streams; `crypto.webcrypto` loads WebCrypto): about
 * 8 MiB of RSS for code the daemon never calls.
 */
const builtinsThroughRequire: Plugin = {
  name: 'builtins-through-require',
  setup(b) {
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) =>
      args.kind === 'import-statement' && isBuiltin(args.path)
        ? { path: args.path, namespace: 'builtin-through-require' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin-through-require' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

/**
 * prom-client's index loads its Pushgateway (node:https, node:zlib), its cluster
 * AggregatorRegistry (node:cluster, hence child_process and dgram) and `collectDefaultMetrics`
 * (every default collector, the CPU one with OpenTelemetry's API: 51 modules for exemplars);
 * meshlet is scraped, runs one process and registers the collectors it exports itself
 * (telemetry/process-metrics.ts), so inside the bundle all three refuse to be used.
 */
const withoutPromClientExtras: Plugin = {
  name: 'without-prom-client-extras',
  setup(b) {
    b.onResolve({ filter: /^\.\/lib\/(cluster|pushgateway|defaultMetrics)$/ }, (args) =>
      /[\\/]node_modules[\\/]prom-client[\\/]index\.js$/.test(args.importer)
        ? { path: args.path, namespace: 'prom-client-extra' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'prom-client-extra' }, (args) => ({
      contents: `module.exports = function () { throw new Error(${JSON.stringify(`prom-client's ${args.path} is not part of the meshlet daemon bundle`)}); };`,
      loader: 'js',
    }));
  },
};

/**
 * Writes the daemon bundle to `outdir` (default `dist/daemon`; `gc-tuning.ts` re-executes into
 * `dist/daemon/daemon-main.js` when it exists). ESM with code splitting, so what the daemon imports
 * lazily (the config loader, registries other than static, the gateway, the gRPC admin API) stays
 * in chunks loaded on first use. `outdir` must sit two levels below the package root, as dist/*
 * does: `new URL('../../protos/…', import.meta.url)` finds the .proto files from there.
 */
export async function bundleDaemon(outdir = join(ROOT, 'dist', 'daemon')): Promise<void> {
  rmSync(outdir, { recursive: true, force: true });
  await build({
    entryPoints: [join(ROOT, 'src', 'cli', 'daemon-main.ts')],
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    external: UNBUNDLED,
    plugins: [undiciOnDemand, lazyHttp2ForUndici, withoutPromClientExtras, builtinsThroughRequire],
    // CommonJS dependencies call require() for Node's built-in modules.
    banner: {
      js: "import { createRequire as __meshletRequire } from 'node:module'; const require = __meshletRequire(import.meta.url);",
    },
    // Whitespace only: names stay, so stack traces and logs read as the source does.
    minifyWhitespace: true,
    sourcemap: 'linked',
    logLevel: 'warning',
  });
}

if (import.meta.main) await bundleDaemon(process.argv[2]);
