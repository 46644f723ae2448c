/**
 * `dcvd order`, `dcvd template`, `dcvd outbox` (CONTRACT §9), and the DCV
 * email options `serve` shares with `order create` (CONTRACT §5).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { defaultDcvEmailConfig, parseCount, parseDuration, type DcvEmailConfig } from '../config.ts';
import { cryptoRandom, systemClock } from '../deps.ts';
import type { Store } from '../store/database.ts';
import { OfferedAddressRegistry } from '../registry/offered.ts';
import { checkDomainName } from '../domains/index.ts';
import { DEFAULT_OUTBOX_POLICY, listOutbox, OUTBOX_STATES, type OutboxView } from '../mail/outbox.ts';
import { DCV_METHODS, OrderError, OrderRepository, orderView, validationDomain, type DcvMethod, type OrderRow, type OrderView } from '../orders/orders.ts';
import { GLOBAL_SCOPE, TemplateRepository, TemplateStoreError, templateView, type TemplateView } from '../orders/templates.ts';
import { offeredRecipient, queueDcvEmail } from '../orders/dcv-email.ts';
import { loadValueKeys, MAX_RANDOM_VALUE_TTL_MS } from '../orders/random-values.ts';
import { listEvidence } from '../orders/confirmation.ts';
import { listWebhooks } from '../orders/webhooks.ts';
import { opt, print, withJson, withStore, withStoreOptions, type StoreFlags } from './options.ts';

/** An order number, product code or template id: the API's integer rule (CONTRACT §1). */
function parseId(text: string): number {
  const n = /^\d{1,16}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`expected a whole number from 1 to 2^53-1, got ${JSON.stringify(text)}`);
  return n;
}

function parseTtl(text: string): number {
  const ms = parseDuration(text);
  if (ms <= 0 || ms > MAX_RANDOM_VALUE_TTL_MS) throw new Error('must be more than 0 and at most 30d (BR 3.2.2.4.4)');
  return ms;
}

// ---------------------------------------------------------------- options

export interface ValueFlags {
  secretKeyFile?: string;
  randomValueTtl: number;
}

/** What creates random values: `serve` and `order create --dcv-email`. */
function withValueOptions(cmd: Command): Command {
  return cmd
    .addOption(opt('--secret-key-file <file>', 'key of the random values\u2019 keyed hashes; created (0600) on first use; every instance sharing a database needs the same file (default: DATA_DIR/secret.key)'))
    .addOption(opt('--random-value-ttl <duration>', 'validity of a new validation code, at most 30d', parseTtl).default(MAX_RANDOM_VALUE_TTL_MS, '30d'));
}

export interface DcvEmailFlags extends ValueFlags {
  smtpUrl?: string;
  mailFrom: string;
  publicUrl?: string;
  resendInterval: number;
  outboxMaxAttempts: number;
  outboxRetryBase: number;
  outboxRetryMax: number;
  outboxLease: number;
  outboxConcurrency: number;
  outboxPollInterval: number;
}

/** The DCV email options of `serve`. */
export function withDcvEmailOptions(cmd: Command): Command {
  const d = DEFAULT_OUTBOX_POLICY;
  return withValueOptions(cmd)
    .addOption(opt('--smtp-url <url>', 'smtp[s]://[user:pass@]host[:port] (default: none \u2014 emails are written as .eml files under DATA_DIR/outbox/)'))
    .addOption(opt('--mail-from <address>', 'sender of DCV emails').default(defaultDcvEmailConfig().mailFrom))
    .addOption(opt('--public-url <url>', 'base of the confirmation links (default: https://localhost:PORT of --listen)'))
    .addOption(opt('--resend-interval <duration>', 'minimum time between two DCV emails of one order (faster: -160)', parseDuration).default(60_000, '60s'))
    .addOption(opt('--outbox-max-attempts <n>', 'delivery attempts before an email is marked failed', (v) => parseCount(v, 1)).default(d.maxAttempts))
    .addOption(opt('--outbox-retry-base <duration>', 'wait after the first failed attempt; doubled after each further one', parseDuration).default(d.retryBaseMs, '30s'))
    .addOption(opt('--outbox-retry-max <duration>', 'longest wait between attempts', parseDuration).default(d.retryMaxMs, '1h'))
    .addOption(opt('--outbox-lease <duration>', 'how long a worker holds an email it is sending; SMTP timeouts are a third of it', parseDuration).default(d.leaseMs, '5m'))
    .addOption(opt('--outbox-concurrency <n>', 'emails in flight at once (SMTP connections)', (v) => parseCount(v, 1)).default(d.concurrency))
    .addOption(opt('--outbox-poll-interval <duration>', 'how often the worker looks for due emails', parseDuration).default(d.pollMs, '1s'));
}

export function dcvEmailConfigFrom(flags: DcvEmailFlags & { dataDir: string }): DcvEmailConfig {
  return defaultDcvEmailConfig({
    smtpUrl: flags.smtpUrl,
    mailFrom: flags.mailFrom,
    publicUrl: flags.publicUrl,
    resendIntervalMs: flags.resendInterval,
    randomValueTtlMs: flags.randomValueTtl,
    secretKeyFile: flags.secretKeyFile ? resolve(flags.secretKeyFile) : undefined,
    outbox: {
      maxAttempts: flags.outboxMaxAttempts,
      retryBaseMs: flags.outboxRetryBase,
      retryMaxMs: flags.outboxRetryMax,
      leaseMs: flags.outboxLease,
      concurrency: flags.outboxConcurrency,
      pollMs: flags.outboxPollInterval,
    },
  });
}

// ---------------------------------------------------------------- helpers

async function accountId(store: Store, login: string): Promise<number> {
  const row = await store.db.selectFrom('accounts').select('id').where('login', '=', login).executeTakeFirst();
  if (!row) throw new OrderError(`no account ${JSON.stringify(login)}`);
  return row.id;
}

async function logins(store: Store): Promise<Map<number, string>> {
  const rows = await store.db.selectFrom('accounts').select(['id', 'login']).execute();
  return new Map(rows.map((r) => [r.id, r.login]));
}

async function viewsOf(store: Store, rows: OrderRow[]): Promise<OrderView[]> {
  const names = await logins(store);
  return rows.map((r) => orderView(r, names.get(r.account_id) ?? `#${r.account_id}`));
}

function describeOrder(o: OrderView): string {
  return [
    `order ${o.orderNumber}  (${o.dcvStatus})`,
    `  base order number: ${o.baseOrderNumber}`,
    `  account: ${o.account}`,
    `  domain: ${o.domain}`,
    `  product: ${o.product ?? 'none'}${o.voucher ? ', voucher' : ''}`,
    `  DCV: ${o.dcvMethod}${o.dcvEmailAddress ? ` to ${o.dcvEmailAddress}` : ''}${o.lastDcvEmailAt ? `, last email queued ${o.lastDcvEmailAt}` : ''}`,
  ].join('\n');
}

function describeEmail(e: OutboxView): string {
  const when = e.deliveredAt ? ` at ${e.deliveredAt}` : e.nextAttemptAt ? `, next attempt ${e.nextAttemptAt}` : '';
  const why = e.lastError ? ` \u2014 ${e.lastError}` : '';
  return `${e.messageId}  order ${e.orderNumber}  to ${e.to}  ${e.state}${when}  (attempts ${e.attempts})${why}`;
}

// ---------------------------------------------------------------- order

interface OrderCreateFlags extends StoreFlags, ValueFlags {
  account: string;
  domain: string;
  orderNumber?: number;
  baseOrderNumber?: number;
  product?: number;
  voucher?: boolean;
  dcvMethod: DcvMethod;
  templateId?: number;
  dcvEmail?: string;
  json?: boolean;
}

async function createOrder(store: Store, flags: OrderCreateFlags): Promise<OrderView & { queuedEmail: string | null }> {
  const now = systemClock.now();
  const owner = await accountId(store, flags.account);
  const orders = new OrderRepository(store.db, systemClock, cryptoRandom);
  let templateRef: number | null = null;
  if (flags.templateId !== undefined) {
    const row = await new TemplateRepository(store.db, systemClock).resolve(owner, flags.templateId);
    if (!row) throw new OrderError(`no template ${flags.templateId} for account ${JSON.stringify(flags.account)} or global`);
    templateRef = row.id;
  }
  // The 24-hour rule (CONTRACT §4) before anything is written.
  let recipient;
  if (flags.dcvEmail !== undefined) {
    if (flags.dcvMethod !== 'email') throw new OrderError('--dcv-email needs --dcv-method email');
    const domain = checkDomainName(flags.domain);
    if (domain.ok) {
      const pseudo = { account_id: owner, domain: domain.domain };
      recipient = await offeredRecipient(new OfferedAddressRegistry(store.db), pseudo, flags.dcvEmail, now);
      if (!recipient) {
        throw new OrderError(
          `${flags.dcvEmail} was not returned to account ${JSON.stringify(flags.account)} by GetDCVEmailAddressList for ${validationDomain(pseudo)} in the last 24 hours`,
        );
      }
    }
  }
  const input: Parameters<OrderRepository['create']>[0] = { accountId: owner, domain: flags.domain, dcvMethod: flags.dcvMethod, voucher: flags.voucher === true };
  if (flags.orderNumber !== undefined) input.orderNumber = flags.orderNumber;
  if (flags.baseOrderNumber !== undefined) input.baseOrderNumber = flags.baseOrderNumber;
  if (flags.product !== undefined) input.product = flags.product;
  if (flags.templateId !== undefined) input.templateId = flags.templateId;
  let order = await orders.create(input);
  let queuedEmail: string | null = null;
  if (recipient) {
    const settings = {
      keys: loadValueKeys(resolve(flags.dataDir), flags.secretKeyFile ? resolve(flags.secretKeyFile) : undefined),
      random: cryptoRandom,
      randomValueTtlMs: flags.randomValueTtl,
      resendIntervalMs: 0,
    };
    const result = await queueDcvEmail(store.db, settings, { order, recipient, templateRef, now });
    if (!result.queued) throw new OrderError(`order ${order.order_number} was created, but its DCV email could not be queued (${result.reason})`);
    queuedEmail = result.messageId;
    order = (await orders.findByNumber(order.order_number))!;
  }
  const [view] = await viewsOf(store, [order]);
  return { ...view!, queuedEmail };
}

export function orderCommands(): Command {
  const order = new Command('order').description('orders of the CA\u2019s ordering system (ResendDCVEmail works on them)');
  const common = (cmd: Command) => withJson(withStoreOptions(cmd));

  withValueOptions(
    common(
      order
        .command('create')
        .description('create an order; with --dcv-email, the 24-hour rule applies and the first DCV email is queued')
        .addOption(opt('--account <login>', 'the account that owns the order').makeOptionMandatory())
        .addOption(opt('--domain <domain>', 'the domain to validate (`*.` for a wildcard)').makeOptionMandatory())
        .addOption(opt('--order-number <n>', 'unique order number (default: a new random 8-digit one)', parseId))
        .addOption(opt('--base-order-number <n>', 'the chain this renewal/reissue belongs to (default: the order\u2019s own number)', parseId))
        .addOption(opt('--product <code>', 'product code (801 VMC and 803 CMC ignore dcvTemplateID)', parseId))
        .addOption(opt('--voucher', 'a voucher order (ResendDCVEmail then needs the voucher permission)'))
        .addOption(opt('--dcv-method <method>', `${DCV_METHODS.join(', ')}`).choices([...DCV_METHODS]).default('email'))
        .addOption(opt('--template-id <n>', 'the DCV email template of this order (account\u2019s own, else global)', parseId))
        .addOption(opt('--dcv-email <address>', 'send the first DCV email to this address (returned by GetDCVEmailAddressList in the last 24 hours)')),
    ),
  ).action(async (flags: OrderCreateFlags) => {
    const view = await withStore(flags, (s) => createOrder(s, flags));
    print(flags.json, view, () => `created ${describeOrder(view)}${view.queuedEmail ? `\n  DCV email queued: ${view.queuedEmail}` : ''}`);
  });

  common(order.command('show').description('show an order and its DCV emails').argument('<order-number>', 'order number', parseId)).action(
    async (orderNumber: number, flags: StoreFlags & { json?: boolean }) => {
      const view = await withStore(flags, async (s) => {
        const row = await new OrderRepository(s.db, systemClock, cryptoRandom).require(orderNumber);
        const [v] = await viewsOf(s, [row]);
        return { ...v!, emails: await listOutbox(s.db, { orderId: row.id }), evidence: await listEvidence(s.db, { orderId: row.id }), webhooks: await listWebhooks(s.db, { orderId: row.id }) };
      });
      print(flags.json, view, () =>
        [
          describeOrder(view),
          ...view.emails.map((e) => `  email ${describeEmail(e)}`),
          ...view.webhooks.map((w) => `  webhook ${w.event} ${w.eventId} to ${w.url}  ${w.state}  (attempts ${w.attempts})${w.lastError ? ` \u2014 ${w.lastError}` : ''}`),
          ...view.evidence.map((e) => `  ${e.decision} ${e.decidedAt} by ${e.recipient} (ADN ${e.adn}, BR ${e.brSection} v${e.brVersion}, ${e.addressSource}) from ${e.sourceIp}`),
        ].join('\n'),
      );
    },
  );

  common(order.command('list').description('list orders, oldest first').addOption(opt('--account <login>', 'only this account\u2019s orders'))).action(
    async (flags: StoreFlags & { json?: boolean; account?: string }) => {
      const views = await withStore(flags, async (s) => {
        const owner = flags.account === undefined ? undefined : await accountId(s, flags.account);
        return viewsOf(s, await new OrderRepository(s.db, systemClock, cryptoRandom).list(owner));
      });
      print(flags.json, views, () => (views.length === 0 ? 'no orders' : views.map(describeOrder).join('\n')));
    },
  );

  common(order.command('cancel').description('cancel an order: its codes stop working, unsent DCV emails are not sent').argument('<order-number>', 'order number', parseId)).action(
    async (orderNumber: number, flags: StoreFlags & { json?: boolean }) => {
      const view = await withStore(flags, async (s) => (await viewsOf(s, [await new OrderRepository(s.db, systemClock, cryptoRandom).cancel(orderNumber)]))[0]!);
      print(flags.json, view, () => `cancelled ${describeOrder(view)}`);
    },
  );
  return order;
}

// ---------------------------------------------------------------- template

interface TemplateCreateFlags extends StoreFlags {
  account?: string;
  global?: boolean;
  id: number;
  subject: string;
  textFile: string;
  htmlFile?: string;
  json?: boolean;
}

export function templateCommands(): Command {
  const template = new Command('template').description('DCV email templates (mustache: {{orderNumber}} {{domain}} {{adn}} {{validationCode}} {{confirmationUrl}} {{expiresAt}})');
  const common = (cmd: Command) => withJson(withStoreOptions(cmd));

  common(
    template
      .command('create')
      .description('create a template for one account (--account) or every account (--global); dcvTemplateID names it')
      .addOption(opt('--account <login>', 'the account the template belongs to'))
      .addOption(opt('--global', 'a template every account can use'))
      .addOption(opt('--id <n>', 'the template id (dcvTemplateID)', parseId).makeOptionMandatory())
      .addOption(opt('--subject <text>', 'subject line (may use {{domain}}, {{orderNumber}}, {{adn}})').makeOptionMandatory())
      .addOption(opt('--text-file <file>', 'plain-text body; must contain {{validationCode}}').makeOptionMandatory())
      .addOption(opt('--html-file <file>', 'HTML body; must contain {{validationCode}}; values are HTML-escaped')),
  ).action(async (flags: TemplateCreateFlags) => {
    if ((flags.account === undefined) === (flags.global !== true)) throw new TemplateStoreError('give exactly one of --account NAME and --global');
    const text = readFileSync(flags.textFile, 'utf8');
    const html = flags.htmlFile === undefined ? undefined : readFileSync(flags.htmlFile, 'utf8');
    const view = await withStore(flags, async (s) => {
      const scope = flags.account === undefined ? GLOBAL_SCOPE : await accountId(s, flags.account);
      const row = await new TemplateRepository(s.db, systemClock).create(scope, flags.id, {
        subject: flags.subject,
        text,
        ...(html === undefined ? {} : { html }),
      });
      return templateView(row, flags.account ?? null);
    });
    print(flags.json, view, () => `created ${describeTemplate(view)}`);
  });

  common(template.command('list').description('list templates').addOption(opt('--account <login>', 'only this account\u2019s templates'))).action(
    async (flags: StoreFlags & { json?: boolean; account?: string }) => {
      const views = await withStore(flags, async (s) => {
        const scope = flags.account === undefined ? undefined : await accountId(s, flags.account);
        const names = await logins(s);
        return (await new TemplateRepository(s.db, systemClock).list(scope)).map((r) => templateView(r, r.account_id === GLOBAL_SCOPE ? null : (names.get(r.account_id) ?? `#${r.account_id}`)));
      });
      print(flags.json, views, () => (views.length === 0 ? 'no templates' : views.map(describeTemplate).join('\n')));
    },
  );
  return template;
}

function describeTemplate(t: TemplateView): string {
  return `template ${t.id} (${t.account === null ? 'global' : `account ${t.account}`})${t.hasHtml ? ' text+HTML' : ' text'}: ${t.subject}`;
}

// ---------------------------------------------------------------- outbox

export function outboxCommands(): Command {
  const outbox = new Command('outbox').description('the DCV email outbox');
  withJson(
    withStoreOptions(
      outbox
        .command('list')
        .description('DCV emails and their delivery state, newest first')
        .addOption(opt('--state <state>', OUTBOX_STATES.join(', ')).choices([...OUTBOX_STATES]))
        .addOption(opt('--order <n>', 'only this order\u2019s emails', parseId))
        .addOption(opt('--limit <n>', 'at most this many', (v) => parseCount(v, 1)).default(100)),
    ),
  ).action(async (flags: StoreFlags & { json?: boolean; state?: string; order?: number; limit: number }) => {
    const views = await withStore(flags, async (s) => {
      const filter: Parameters<typeof listOutbox>[1] = { limit: flags.limit };
      if (flags.state !== undefined) filter.state = flags.state;
      if (flags.order !== undefined) filter.orderId = (await new OrderRepository(s.db, systemClock, cryptoRandom).require(flags.order)).id;
      return listOutbox(s.db, filter);
    });
    print(flags.json, views, () => (views.length === 0 ? 'no emails' : views.map(describeEmail).join('\n')));
  });
  return outbox;
}
