/** `dcvd account …`: API accounts (CONTRACT §9). */
import { Command, Option } from 'commander';
import { DEFAULT_WEBHOOK_SECRET_OVERLAP_MS, formatDuration, parseDuration, parseIsoDate } from '../config.ts';
import type { AccountInput, AccountView, Permission } from '../accounts/repository.ts';
import { opt, print, readStdin, repeatable, withAdmin, withJson, withStoreOptions, type StoreFlags } from './options.ts';

function describeAccount(a: AccountView): string {
  const state = a.locked ? 'locked' : a.lockedUntil ? `locked out until ${a.lockedUntil}` : 'active';
  return [
    `${a.login}  (${state})`,
    `  permissions: ${a.permissions.join(', ') || 'none'}`,
    `  allowed networks: ${a.allowedNetworks.join(', ') || 'any'}`,
    `  password expires: ${a.passwordExpiresAt ?? 'never'}`,
    `  webhook: ${a.webhookUrl ?? 'the server\u2019s --webhook-url'}`,
  ].join('\n');
}

/** The webhook signing secret made by create/update/rotate: printed this once (stdout, never the log). */
function describeSecret(a: { webhookSecret?: string; previousWebhookSecretExpiresAt?: string | null }): string {
  if (a.webhookSecret === undefined) return '';
  const previous = a.previousWebhookSecretExpiresAt ? `\n  the previous secret keeps signing until ${a.previousWebhookSecretExpiresAt}` : '';
  return `\n  webhook signing secret (shown only now; give it to the receiver): ${a.webhookSecret}${previous}`;
}

/**
 * An account's own webhook URL, the one option without its DCVD_* variable: DCVD_WEBHOOK_URL is serve's
 * global URL, and exported for serve it would give every account created in that shell a URL of its own
 * (the same one, signed with a new secret of the account's instead of the global one).
 */
const accountWebhookUrl = (description: string) => new Option('--webhook-url <url>', description);

/** Accounts' webhook secrets are sealed under the secret key: the commands that make one need the server's file. */
const secretKeyOption = () => opt('--secret-key-file <file>', 'the server\u2019s secret key file, which seals webhook signing secrets (default: DATA_DIR/secret.key)');

interface AccountFlags extends StoreFlags {
  login: string;
  secretKeyFile?: string;
  overlap?: number;
  passwordStdin?: boolean;
  allowIp?: string[];
  clearAllowIp?: boolean;
  permission?: string[];
  clearPermissions?: boolean;
  passwordExpires?: number | false;
  webhookUrl?: string | false;
  json?: boolean;
}

export function accountCommands(): Command {
  const account = new Command('account');
  const login = () => opt('--login <name>', 'the account\u2019s loginName (case-sensitive)').makeOptionMandatory();
  const common = (cmd: Command) => withJson(withStoreOptions(cmd));

  common(
    account
      .command('create')
      .description('create an account; the password is read from standard input')
      .addOption(login())
      .addOption(opt('--password-stdin', 'read the password from standard input (required)').makeOptionMandatory())
      .addOption(repeatable('--allow-ip <cidr>', 'allowed source network; repeat for several (default: any; an empty one is an error)', { keepEmpty: true }))
      .addOption(repeatable('--permission <name>', 'auto-apply or voucher; repeat for both'))
      .addOption(opt('--password-expires <iso-date>', 'the password stops working at this date', parseIsoDate))
    .addOption(accountWebhookUrl('POST this account\u2019s DCV decisions here (default: the server\u2019s --webhook-url); prints the URL\u2019s own signing secret once'))
    .addOption(secretKeyOption()),
  ).action(async (flags: AccountFlags) => {
    const password = await readStdin();
    const input: AccountInput & { password: string } = { password, allowedNetworks: flags.allowIp ?? [] };
    if (flags.permission) input.permissions = flags.permission as Permission[];
    if (typeof flags.passwordExpires === 'number') input.passwordExpiresAt = flags.passwordExpires;
    if (typeof flags.webhookUrl === 'string') input.webhookUrl = flags.webhookUrl;
    const view = await withAdmin(flags, (a) => a.createAccount(flags.login, input));
    print(flags.json, view, () => `created account\n${describeAccount(view)}${describeSecret(view)}`);
  });

  common(
    account
      .command('update')
      .description('change an account; what is not given stays as it is')
      .addOption(login())
      .addOption(opt('--password-stdin', 'set a new password, read from standard input'))
      .addOption(repeatable('--allow-ip <cidr>', 'replace the allowed source networks; repeat for several (an empty one is an error; --clear-allow-ip allows any)', { keepEmpty: true }))
      .addOption(opt('--clear-allow-ip', 'allow every source network'))
      .addOption(repeatable('--permission <name>', 'replace the permissions: auto-apply, voucher; repeat for both'))
      .addOption(opt('--clear-permissions', 'remove every permission'))
      .addOption(opt('--password-expires <iso-date>', 'the password stops working at this date', parseIsoDate))
      .addOption(opt('--no-password-expires', 'the password never expires'))
      .addOption(accountWebhookUrl('POST this account\u2019s DCV decisions here (prints a signing secret once if the account has none)'))
      .addOption(opt('--no-webhook-url', 'use the server\u2019s --webhook-url again'))
      .addOption(secretKeyOption()),
  ).action(async (flags: AccountFlags) => {
    const input: AccountInput = {};
    if (flags.passwordStdin) input.password = await readStdin();
    if (flags.clearAllowIp) input.allowedNetworks = [];
    else if (flags.allowIp) input.allowedNetworks = flags.allowIp;
    if (flags.clearPermissions) input.permissions = [];
    else if (flags.permission) input.permissions = flags.permission as Permission[];
    if (flags.passwordExpires === false) input.passwordExpiresAt = null;
    else if (typeof flags.passwordExpires === 'number') input.passwordExpiresAt = flags.passwordExpires;
    if (flags.webhookUrl === false) input.webhookUrl = null;
    else if (typeof flags.webhookUrl === 'string') input.webhookUrl = flags.webhookUrl;
    const view = await withAdmin(flags, (a) => a.updateAccount(flags.login, input));
    print(flags.json, view, () => `updated account\n${describeAccount(view)}${describeSecret(view)}`);
  });

  common(
    account
      .command('rotate-webhook-secret')
      .description('make a new signing secret for the account\u2019s webhook URL and print it once; the previous one keeps signing during the overlap')
      .addOption(login())
      .addOption(opt('--overlap <duration>', 'how long the previous secret keeps signing too (e.g. 24h; 0: it stops at once)', parseDuration).default(DEFAULT_WEBHOOK_SECRET_OVERLAP_MS, formatDuration(DEFAULT_WEBHOOK_SECRET_OVERLAP_MS)))
      .addOption(secretKeyOption()),
  ).action(async (flags: AccountFlags) => {
    const view = await withAdmin(flags, (a) => a.rotateWebhookSecret(flags.login, flags.overlap ?? 0));
    print(flags.json, view, () => `rotated the webhook signing secret\n${describeAccount(view)}${describeSecret(view)}`);
  });

  for (const [name, description] of [
    ['lock', 'lock an account until it is unlocked (its calls answer -16)'],
    ['unlock', 'unlock an account, also from a lockout, and reset its failure count'],
  ] as const) {
    common(account.command(name).description(description).addOption(login())).action(async (flags: AccountFlags) => {
      const view = await withAdmin(flags, (a) => (name === 'lock' ? a.lockAccount(flags.login) : a.unlockAccount(flags.login)));
      print(flags.json, view, () => `${name}ed account\n${describeAccount(view)}`);
    });
  }

  common(account.command('list').description('list the accounts')).action(async (flags: AccountFlags) => {
    const views = await withAdmin(flags, (a) => a.listAccounts());
    print(flags.json, views, () => (views.length === 0 ? 'no accounts' : views.map(describeAccount).join('\n')));
  });
  return account;
}

