// The `meshlet` command line: verbs, flags, help, and the mapping of failures to exit codes.
import yargs, { type Argv } from 'yargs';
import { loadConfigFile } from '../config/load-config.ts';
import { LOG_LEVELS, type LogLevel } from '../telemetry/logger.ts';
import { parseDuration } from '../config/duration.ts';
import { ensureGcTuning } from './gc-tuning.ts';
import { settleHangups } from './hangup-hold.ts';
import { EXIT, reportFailure } from './exit-codes.ts';
import type { AppCommand } from './run-command.ts';

/**
 * `meshlet config check FILE`: validates a config file and prints a one-line summary. Unless
 * `offline`, also what `run` needs from this machine: the secrets, and the files the config names
 * (TLS, endpoints, API keys, registry credentials), read as `run` reads them at start.
 */
async function configCheck(file: string, offline: boolean): Promise<number> {
  const config = loadConfigFile(file, { secrets: !offline });
  if (!offline) await (await import('../config/config-files.ts')).checkConfigFiles(config, file);
  const fromRegistry = config.registry.type === 'static' ? Object.keys(config.registry.endpoints) : [];
  const upstreams = new Set([...Object.keys(config.upstreams), ...fromRegistry]);
  process.stdout.write(
    `${file}: ok (${upstreams.size} upstream(s), ${config.routes.length} route(s), registry ${config.registry.type})\n`,
  );
  return EXIT.ok;
}

// Verbs load their code on use: `meshlet run` keeps the CLI-only modules out of the daemon's memory.

/**
 * Runs the CLI with `argv` (without node and script). Sets `process.exitCode`, and exits
 * explicitly after `run` so no stray handle keeps the process alive.
 */
export async function runVerbs(argv: string[]): Promise<void> {
  let code: number = EXIT.ok;
  try {
    await yargs(argv)
      .scriptName('meshlet')
      .usage('$0 <command> [options]')
      .command(
        'run',
        'Run the sidecar daemon; with `-- CMD ARGS…`, run the app under it (started once meshlet is ready, stopped before meshlet)',
        (y) =>
          y
            .usage('$0 run --config FILE [--export-proxy-env] [--ready-timeout 60s] [-- CMD ARGS…]')
            .option('export-proxy-env', {
              type: 'boolean',
              default: false,
              describe:
                'with -- CMD: also give the app HTTP_PROXY/http_proxy (the outbound listener) and NO_PROXY=localhost,127.0.0.1',
            })
            .option('ready-timeout', {
              type: 'string',
              default: '60s',
              describe:
                'with -- CMD: longest wait for meshlet to be ready before giving up (exit 1, app not started); 0 = no limit',
            })
            .option('config', {
              alias: 'c',
              type: 'string',
              demandOption: true,
              describe: 'config file (YAML)',
            })
            .option('log-level', {
              type: 'string',
              choices: LOG_LEVELS,
              default: 'info',
              describe: 'log level (logs are JSON on stdout)',
            }),
        async (args) => {
          // What follows `--`, taken as typed (yargs would turn "08080" into 8080).
          const dashes = argv.indexOf('--');
          const command = dashes === -1 ? [] : argv.slice(dashes + 1);
          const readyTimeoutMs = parseDuration(args['ready-timeout']);
          if (readyTimeoutMs === undefined) {
            throw new UsageError(
              `--ready-timeout: expected a duration like "30s", got "${args['ready-timeout']}"`,
            );
          }
          if (dashes !== -1 && command.length === 0)
            throw new UsageError('nothing after "--": name the app to run');
          // Validated here, so a bad config fails before the re-exec (and before any app starts).
          const config = loadConfigFile(args.config);
          const app: AppCommand | undefined =
            command.length === 0
              ? undefined
              : { command, exportProxyEnv: args['export-proxy-env'], readyTimeoutMs };
          const runArgs =
            app === undefined
              ? []
              : [
                  ...(app.exportProxyEnv ? ['--export-proxy-env'] : []),
                  '--ready-timeout',
                  String(readyTimeoutMs),
                  '--',
                  ...command,
                ];
          await settleHangups();
          ensureGcTuning(args.config, args['log-level'], config, runArgs);
          // Loaded only here (the daemon and everything it imports): no other verb pays for it, and
          // `run` itself re-executes into the daemon bundle above unless told not to.
          const { runCommand } = await import('./run-command.ts');
          code = await runCommand(args.config, args['log-level'] as LogLevel, config, app);
        },
      )
      .command('config', 'Work with config files', (y) =>
        y
          .command(
            'check <file>',
            'Validate a config file; exit 0 when valid, 2 with the bad key otherwise',
            (c) =>
              c
                .positional('file', { type: 'string', demandOption: true, describe: 'config file (YAML)' })
                .option('offline', {
                  type: 'boolean',
                  default: false,
                  describe:
                    'skip what needs the machine meshlet runs on (secretEnv variables set; secretFile, TLS, endpoints, API key and registry credential files read)',
                }),
            async (args) => {
              code = await configCheck(args.file, args.offline);
            },
          )
          .demandCommand(1, 'name a config subcommand: check'),
      )
      .command(
        'wait',
        "Block until a running meshlet is ready (exit 0) or --timeout passes (exit 1); the local app's check is left out",
        (y) =>
          y
            .option('admin', {
              type: 'string',
              default: process.env.MESHLET_ADMIN ?? 'http://127.0.0.1:15000',
              describe:
                'admin API of the running meshlet (default $MESHLET_ADMIN, else http://127.0.0.1:15000)',
            })
            .option('timeout', { type: 'string', default: '30s', describe: 'longest wait, a duration' }),
        async (args) => {
          const timeoutMs = parseDuration(args.timeout);
          if (timeoutMs === undefined) {
            throw new UsageError(`--timeout: expected a duration like "30s", got "${args.timeout}"`);
          }
          code = await (await import('./wait-command.ts')).waitCommand(await adminUrl(args.admin), timeoutMs);
        },
      )
      .command(
        'upstreams',
        "Each upstream's endpoints, breaker and balancer; --watch streams every change (gRPC admin API)",
        (y) =>
          adminOptions(y)
            .option('watch', {
              alias: 'w',
              type: 'boolean',
              default: false,
              describe: 'keep printing: a new view on every endpoint, ejection or breaker change',
            })
            .option('admin-grpc', {
              type: 'string',
              describe: 'host:port of the gRPC admin API (default: asked from --admin)',
            }),
        async (args) => {
          const command = await import('./upstreams-command.ts');
          code = args.watch
            ? await command.watchUpstreamsCommand(await adminUrl(args.admin), args['admin-grpc'], args.json)
            : await command.upstreamsCommand(await adminUrl(args.admin), args.json);
        },
      )
      .command(
        'services',
        'List upstreams with healthy/total endpoints, as the running meshlet sees them; exit 1 when one has none',
        (y) => adminOptions(y),
        async (args) => {
          code = await (
            await import('./services-command.ts')
          ).servicesCommand(await adminUrl(args.admin), args.json);
        },
      )
      .command(
        'health',
        "This instance's checks, each upstream's healthy/total and an overall status; exit 1 when degraded",
        (y) => adminOptions(y),
        async (args) => {
          code = await (
            await import('./health-command.ts')
          ).healthCommand(await adminUrl(args.admin), args.json);
        },
      )
      .command(
        'breakers',
        'Circuit breaker state of each upstream; `breakers reset NAME` closes one; exit 1 when one is open',
        (y) =>
          adminOptions(y).command(
            'reset <name>',
            'Close an upstream circuit breaker by hand',
            (c) =>
              adminOptions(c)
                .positional('name', { type: 'string', demandOption: true, describe: 'upstream name' })
                .option('token', {
                  type: 'string',
                  describe: 'admin token (listeners.admin.token), or MESHLET_ADMIN_TOKEN',
                }),
            async (args) => {
              code = await (
                await import('./breakers-command.ts')
              ).breakerResetCommand(
                await adminUrl(args.admin),
                args.name,
                args.token ?? process.env.MESHLET_ADMIN_TOKEN,
              );
            },
          ),
        async (args) => {
          if (args._.length > 1) return;
          code = await (
            await import('./breakers-command.ts')
          ).breakersCommand(await adminUrl(args.admin), args.json);
        },
      )
      .command(
        'certs',
        'Development certificates for mTLS (a local CA and SPIFFE leaves; not a production CA)',
        (y) =>
          y
            .command(
              'init',
              'Create a development CA: DIR/ca.pem (tls.ca) and DIR/ca-key.pem',
              (c) =>
                c
                  .option('trust-domain', {
                    type: 'string',
                    demandOption: true,
                    describe: 'SPIFFE trust domain, e.g. mesh.local',
                  })
                  .option('out', {
                    type: 'string',
                    demandOption: true,
                    describe: 'directory to write the CA into',
                  })
                  .option('days', { type: 'number', default: 3650, describe: 'validity in days' })
                  .option('force', { type: 'boolean', default: false, describe: 'replace an existing CA' }),
              async (args) => {
                code = await (
                  await import('./certs-command.ts')
                ).certsInit({
                  trustDomain: args['trust-domain'],
                  out: args.out,
                  days: args.days,
                  force: args.force,
                });
              },
            )
            .command(
              'issue',
              'Issue a leaf with the SPIFFE URI SAN spiffe://<td>/svc/NAME: DIR/NAME.pem and DIR/NAME-key.pem',
              (c) =>
                c
                  .option('service', { type: 'string', demandOption: true, describe: 'service name' })
                  .option('ca', {
                    type: 'string',
                    demandOption: true,
                    describe: 'directory of the CA (certs init --out)',
                  })
                  .option('out', {
                    type: 'string',
                    demandOption: true,
                    describe: 'directory to write the leaf into',
                  })
                  .option('trust-domain', { type: 'string', describe: "default: the CA's" })
                  .option('datacenter', {
                    type: 'string',
                    describe: "use Consul's form spiffe://<td>/ns/default/dc/DC/svc/NAME",
                  })
                  .option('hours', { type: 'number', default: 72, describe: 'validity in hours' })
                  .option('dns', {
                    type: 'string',
                    array: true,
                    describe: 'DNS names (default NAME, localhost)',
                  })
                  .option('ip', {
                    type: 'string',
                    array: true,
                    describe: 'IP addresses (default 127.0.0.1)',
                  }),
              async (args) => {
                code = await (
                  await import('./certs-command.ts')
                ).certsIssue({
                  service: args.service,
                  ca: args.ca,
                  out: args.out,
                  trustDomain: args['trust-domain'],
                  datacenter: args.datacenter,
                  hours: args.hours,
                  dns: args.dns,
                  ip: args.ip,
                });
              },
            )
            .demandCommand(1, 'name a certs subcommand: init, issue'),
      )
      .demandCommand(
        1,
        'name a command: run, wait, config check, services, upstreams, health, breakers, certs',
      )
      .strict()
      .help()
      .alias('h', 'help')
      .version()
      .fail((msg, err) => {
        if (err) throw err;
        throw new UsageError(msg);
      })
      .parseAsync();
  } catch (err) {
    if (err instanceof UsageError || (err instanceof Error && err.name === 'CertsUsageError')) {
      process.stderr.write(`meshlet: ${(err as Error).message}\nRun "meshlet --help" for usage.\n`);
      code = EXIT.usage;
    } else code = reportFailure(err);
  }
  process.exitCode = code;
  if (argv[0] === 'run') setImmediate(() => process.exit(code));
}

class UsageError extends Error {}

/** `--admin`, checked: an http(s) URL, else a usage error (exit 2) naming the flag. */
async function adminUrl(admin: string): Promise<string> {
  const reason = (await import('./admin-client.ts')).badAdminUrl(admin);
  if (reason !== undefined) throw new UsageError(reason);
  return admin;
}

/** `--admin URL` and `--json`, shared by the verbs that read a running meshlet's admin API. */
function adminOptions<T>(y: Argv<T>) {
  return y
    .option('admin', {
      type: 'string',
      default: 'http://127.0.0.1:15000',
      describe: 'admin API of the running meshlet',
    })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON instead of a table' });
}
