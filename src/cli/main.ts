// The `meshlet` command line: verbs, flags, help, and the mapping of failures to exit codes.
import yargs, { type Argv } from 'yargs';
import { loadConfigFile } from '../config/load-config.ts';
import { LOG_LEVELS, type LogLevel } from '../telemetry/logger.ts';
import { ensureGcTuning } from './gc-tuning.ts';
import { appCommandUnsupported, EXIT, reportFailure, runCommand } from './run-command.ts';

/** `meshlet config check FILE`: validates a config file and prints a one-line summary. */
function configCheck(file: string): number {
  const config = loadConfigFile(file);
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
export async function main(argv: string[]): Promise<void> {
  let code: number = EXIT.ok;
  try {
    await yargs(argv)
      .scriptName('meshlet')
      .usage('$0 <command> [options]')
      .command(
        'run',
        'Run the sidecar daemon',
        (y) =>
          y
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
          // What follows `--` (strict mode refuses other extras): refused before anything is read or started.
          const command = args._.slice(1);
          if (command.length > 0) {
            process.stderr.write(appCommandUnsupported(command));
            code = EXIT.usage;
            return;
          }
          // Validated here, so a bad config fails before the re-exec, which then hands it over.
          const config = loadConfigFile(args.config);
          ensureGcTuning(args.config, args['log-level'], config);
          code = await runCommand(args.config, args['log-level'] as LogLevel, config);
        },
      )
      .command('config', 'Work with config files', (y) =>
        y
          .command(
            'check <file>',
            'Validate a config file; exit 0 when valid, 2 with the bad key otherwise',
            (c) =>
              c.positional('file', { type: 'string', demandOption: true, describe: 'config file (YAML)' }),
            (args) => {
              code = configCheck(args.file);
            },
          )
          .demandCommand(1, 'name a config subcommand: check'),
      )
      .command(
        'services',
        'List upstreams with healthy/total endpoints, as the running meshlet sees them; exit 1 when one has none',
        (y) => adminOptions(y),
        async (args) => {
          code = await (await import('./services-command.ts')).servicesCommand(args.admin, args.json);
        },
      )
      .command(
        'health',
        "This instance's checks, each upstream's healthy/total and an overall status; exit 1 when degraded",
        (y) => adminOptions(y),
        async (args) => {
          code = await (await import('./health-command.ts')).healthCommand(args.admin, args.json);
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
              ).breakerResetCommand(args.admin, args.name, args.token ?? process.env.MESHLET_ADMIN_TOKEN);
            },
          ),
        async (args) => {
          if (args._.length > 1) return;
          code = await (await import('./breakers-command.ts')).breakersCommand(args.admin, args.json);
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
      .demandCommand(1, 'name a command: run, config check, services, health, breakers, certs')
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

if (import.meta.main) await main(process.argv.slice(2));
