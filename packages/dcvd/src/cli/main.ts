/**
 * The `dcvd` command (CONTRACT §9). Only the command a run names is loaded: each
 * command's module (and the stores, servers and SDK it uses) is imported on
 * demand, so `dcvd --version` or `dcvd account list` never loads the HTTP stack
 * (start-up figures: docs/PERFORMANCE.md, "CLI start-up").
 */
import { Command, CommanderError } from 'commander';

interface CommandEntry {
  description: string;
  load: () => Promise<Command>;
}

/** Every command, in `dcvd --help` order; its module builds its options and subcommands. */
const COMMANDS: Record<string, CommandEntry> = {
  serve: { description: 'run the API server (applies pending migrations first)', load: async () => (await import('./serve.ts')).serveCommand() },
  account: { description: 'manage API accounts (loginName / loginPassword)', load: async () => (await import('./accounts.ts')).accountCommands() },
  migrate: { description: 'apply pending database migrations', load: async () => (await import('./migrate.ts')).migrateCommand() },
  order: { description: 'orders of the CA\u2019s ordering system (ResendDCVEmail works on them)', load: async () => (await import('./orders.ts')).orderCommands() },
  template: {
    description: 'DCV email templates (mustache: {{orderNumber}} {{domain}} {{adn}} {{validationCode}} {{confirmationUrl}} {{expiresAt}} {{caName}})',
    load: async () => (await import('./orders.ts')).templateCommands(),
  },
  outbox: { description: 'the DCV email outbox', load: async () => (await import('./orders.ts')).outboxCommands() },
  product: { description: 'the product codes AutoApplyOrder accepts (801 and 803 exist by default)', load: async () => (await import('./products.ts')).productCommands() },
  client: {
    description: 'call GetDCVEmailAddressList / ResendDCVEmail of a server with the @dcvd/client SDK (a dcvd, or the reseller host by default)',
    load: async () => (await import('./client.ts')).clientCommands(),
  },
  sandbox: {
    description: 'start dcvd for integration tests: loopback, fresh data, captured emails, a seeded account, DNS overrides, a movable clock, fault switches',
    load: async () => (await import('./sandbox.ts')).sandboxCommand(),
  },
};

/** The command a run names: the first argument that is not an option (`dcvd help X` names X). */
export function commandNamed(args: readonly string[]): string | undefined {
  const words = args.filter((a) => !a.startsWith('-'));
  return words[0] === 'help' ? words[1] : words[0];
}

/**
 * The program with `names` built in full (default: all of them, as for documentation);
 * the other commands are listed by name and description only.
 */
export async function buildProgram(names: readonly string[] = Object.keys(COMMANDS)): Promise<Command> {
  const program = new Command('dcvd')
    .description('Domain Control Validation email service: GetDCVEmailAddressList and ResendDCVEmail, done for real')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride()
    // Options belong to the command they follow (`dcvd sandbox dns list --data-dir D` is the list's, not the sandbox's).
    .enablePositionalOptions();
  for (const [name, entry] of Object.entries(COMMANDS)) {
    const cmd = names.includes(name) ? await entry.load() : new Command(name);
    program.addCommand(cmd.description(entry.description));
  }
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    const named = commandNamed(argv.slice(2));
    const program = await buildProgram(named !== undefined && named in COMMANDS ? [named] : []);
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`dcvd: ${message}\n`);
    return 1;
  }
}
