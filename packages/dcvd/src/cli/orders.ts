/**
 * `dcvd order`, `dcvd template`, `dcvd outbox` (CONTRACT §9), and the DCV
 * email options `serve` shares with `order create` (CONTRACT §5).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { DEFAULT_OUTBOX_LIST_LIMIT, defaultDcvEmailConfig, defaultMailFrom, formatDuration, parseCount, parseDuration, type DcvEmailConfig } from '../config.ts';
import { OUTBOX_STATES } from '../outbox/states.ts';
import type { OutboxView } from '../outbox/outbox.ts';
import { DCV_METHODS, type DcvMethod } from '../orders/methods.ts';
import { displayLineProblem } from '../text.ts';
import type { OrderView } from '../orders/orders.ts';
import type { TemplateView } from '../orders/templates.ts';
import { MAX_RANDOM_VALUE_TTL_MS } from '../orders/random-values.ts';
import { opt, print, withAdmin, withEmailPolicyOptions, withJson, withStoreOptions, type EmailPolicyFlags, type StoreFlags } from './options.ts';
import type { DnsEvidence } from '../contacts/provider.ts';
import { mpicConfigFrom, withMpicOptions, type MpicFlags } from './mpic.ts';

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
  mailFrom?: string;
  publicUrl?: string;
}

/**
 * What creates random values and queues DCV emails: `serve` and `order create --dcv-email`. The
 * sender's domain is also the Message-IDs' domain, so both take --mail-from and --public-url.
 */
function withValueOptions(cmd: Command, publicUrl = 'base of the confirmation links (default: https://localhost:PORT of --listen)'): Command {
  const { randomValueTtlMs } = defaultDcvEmailConfig();
  return cmd
    .addOption(opt('--mail-from <address>', 'sender of DCV emails, also the domain of their Message-IDs (default: dcvd@ the host of --public-url, else dcvd@localhost)'))
    .addOption(opt('--public-url <url>', publicUrl))
    .addOption(opt('--secret-key-file <file>', 'key of the random values\u2019 keyed hashes; created (0600) on first use; every instance sharing a database needs the same file (default: DATA_DIR/secret.key)'))
    .addOption(opt('--random-value-ttl <duration>', 'validity of a new validation code, at most 30d', parseTtl).default(randomValueTtlMs, formatDuration(randomValueTtlMs)));
}

export interface DcvEmailFlags extends ValueFlags {
  smtpUrl?: string;
  caName: string;
  resendInterval: number;
  outboxMaxAttempts: number;
  outboxRetryBase: number;
  outboxRetryMax: number;
  outboxLease: number;
  outboxConcurrency: number;
  outboxPollInterval: number;
  outboxMaxLag: number;
  outboxFlowDelay: number;
}

/** The DCV email options of `serve`. */
export function withDcvEmailOptions(cmd: Command): Command {
  const defaults = defaultDcvEmailConfig();
  const d = defaults.outbox;
  const f = defaults.outboxFlow;
  return withValueOptions(cmd)
    .addOption(opt('--smtp-url <url>', 'smtp[s]://[user:pass@]host[:port] (default: none \u2014 emails are written as .eml files under DATA_DIR/outbox/)'))
    .addOption(opt('--ca-name <name>', 'the certificate authority\u2019s name in the DCV email\u2019s subject and body and on the confirmation page').default(defaults.caName))
    .addOption(opt('--resend-interval <duration>', 'minimum time between two DCV emails of one order (faster: -160)', parseDuration).default(defaults.resendIntervalMs, formatDuration(defaults.resendIntervalMs)))
    .addOption(opt('--outbox-max-attempts <n>', 'delivery attempts before an email is marked failed', (v) => parseCount(v, 1)).default(d.maxAttempts))
    .addOption(opt('--outbox-retry-base <duration>', 'wait after the first failed attempt; doubled after each further one', parseDuration).default(d.retryBaseMs, formatDuration(d.retryBaseMs)))
    .addOption(opt('--outbox-retry-max <duration>', 'longest wait between attempts', parseDuration).default(d.retryMaxMs, formatDuration(d.retryMaxMs)))
    .addOption(opt('--outbox-lease <duration>', 'how long a worker holds an email it is sending; SMTP timeouts are a third of it', parseDuration).default(d.leaseMs, formatDuration(d.leaseMs)))
    .addOption(opt('--outbox-concurrency <n>', 'emails in flight at once (SMTP connections)', (v) => parseCount(v, 1)).default(d.concurrency))
    .addOption(opt('--outbox-poll-interval <duration>', 'how often the worker looks for due emails', parseDuration).default(d.pollMs, formatDuration(d.pollMs)))
    .addOption(opt('--outbox-max-lag <duration>', 'when the oldest due email has waited this long for delivery, calls that queue DCV emails wait for it to catch up (0: never)', parseDuration).default(f.maxLagMs, formatDuration(f.maxLagMs)))
    .addOption(opt('--outbox-flow-delay <duration>', 'the longest such a call waits before it queues its emails anyway (at most 10s)', parseDuration).default(f.delayMs, formatDuration(f.delayMs)));
}

/** One line of plain text, at most 64 characters: it goes into a Subject header and a page. */
function caName(name: string): string {
  const problem = displayLineProblem(name, 64);
  if (problem) throw new Error(`--ca-name ${problem}`);
  return name.trim();
}

export function dcvEmailConfigFrom(flags: DcvEmailFlags & { dataDir: string }): DcvEmailConfig {
  return defaultDcvEmailConfig({
    smtpUrl: flags.smtpUrl,
    mailFrom: flags.mailFrom ?? defaultMailFrom(flags.publicUrl),
    publicUrl: flags.publicUrl,
    caName: caName(flags.caName),
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
    outboxFlow: { maxLagMs: flags.outboxMaxLag, delayMs: flags.outboxFlowDelay },
  });
}

// ---------------------------------------------------------------- views

function describeOrder(o: OrderView): string {
  return [
    `order ${o.orderNumber}  (${o.dcvStatus})`,
    `  base order number: ${o.baseOrderNumber}`,
    `  account: ${o.account}`,
    `  domain: ${o.domain}`,
    `  product: ${o.product ?? 'none'}${o.voucher ? ', voucher' : ''}`,
    `  DCV: ${o.dcvMethod}${o.dcvEmailAddress ? ` to ${o.dcvEmailAddress}` : ''}${o.lastDcvEmailAt ? `, last email queued ${o.lastDcvEmailAt}` : ''}`,
    // Every domain with its own DCV state (multi-domain orders, CONTRACT §12).
    ...o.domains.map(
      (d, i) =>
        `  domain ${i + 1}: ${d.domain}  ${d.dcvMethod} ${d.dcvStatus}${d.dcvEmailAddress ? ` to ${d.dcvEmailAddress}` : ''}${d.lastDcvEmailAt ? `, last email queued ${d.lastDcvEmailAt}` : ''}`,
    ),
  ].join('\n');
}

function describeEmail(e: OutboxView): string {
  const when = e.deliveredAt ? ` at ${e.deliveredAt}` : e.nextAttemptAt ? `, next attempt ${e.nextAttemptAt}` : '';
  const why = e.lastError ? ` \u2014 ${e.lastError}` : '';
  return `${e.messageId}  order ${e.orderNumber}  to ${e.to}  ${e.state}${when}  (attempts ${e.attempts})${why}`;
}

// ---------------------------------------------------------------- order

/** The DNS answer a contact came from, in one line: resolver, RCODE, AD bit, EDE, DNSSEC status and probe state. */
function describeDnssec(dns: unknown): string {
  if (dns === null || typeof dns !== 'object') return '';
  const d = dns as Partial<DnsEvidence>;
  const ede = (d.extendedErrors ?? []).map((e) => ` EDE ${e.infoCode}`).join('');
  const sec = d.dnssec ? `, DNSSEC ${d.dnssec.status} (${d.dnssec.mode}, resolver ${d.dnssec.probe.state})` : '';
  return `; ${d.type} ${d.name} via ${d.resolver}: ${d.rcode} AD=${d.authenticatedData ? 1 : 0}${ede}${sec}`;
}

interface OrderCreateFlags extends StoreFlags, ValueFlags, EmailPolicyFlags {
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

export function orderCommands(): Command {
  const order = new Command('order');
  const common = (cmd: Command) => withJson(withStoreOptions(cmd));

  withMpicOptions(withValueOptions(
    withEmailPolicyOptions(common(
      order
        .command('create')
        .description('create an order; with --dcv-email, the 24-hour rule applies and the first DCV email is queued')
        .addOption(opt('--account <login>', 'the account that owns the order').makeOptionMandatory())
        .addOption(opt('--domain <domain>', 'the domain to validate (`*.` for a wildcard)').makeOptionMandatory())
        .addOption(opt('--order-number <n>', 'unique order number (default: a new random 8-digit one)', parseId))
        .addOption(opt('--base-order-number <n>', 'the chain this renewal/reissue belongs to (default: the order\u2019s own number)', parseId))
        .addOption(opt('--product <code>', 'product code, one of the catalogue\u2019s (dcvd product list; a *. domain needs a wildcard product; 801 VMC and 803 CMC ignore dcvTemplateID)', parseId))
        .addOption(opt('--voucher', 'a voucher order (ResendDCVEmail then needs the voucher permission)'))
        .addOption(opt('--dcv-method <method>', `${DCV_METHODS.join(', ')}`).choices([...DCV_METHODS]).default('email'))
        .addOption(opt('--template-id <n>', 'the DCV email template of this order (account\u2019s own, else global)', parseId))
        .addOption(opt('--dcv-email <address>', 'send the first DCV email to this address (returned by GetDCVEmailAddressList in the last 24 hours)')),
    )),
    // The running server renders the email and its link; here the URL only names the Message-ID's domain.
    'the server\u2019s --public-url: its host is the Message-ID\u2019s domain unless --mail-from says otherwise',
  )).action(async (flags: OrderCreateFlags & MpicFlags) => {
    const view = await withAdmin(flags, (a) => a.createOrder(flags), mpicConfigFrom(flags));
    print(flags.json, view, () => `created ${describeOrder(view)}${view.queuedEmail ? `\n  DCV email queued: ${view.queuedEmail}` : ''}`);
  });

  withEmailPolicyOptions(common(order.command('show').description('show an order, its DCV emails, webhooks and evidence (usable or not after --email-dcv-cutoff)').argument('<order-number>', 'order number', parseId))).action(
    async (orderNumber: number, flags: StoreFlags & EmailPolicyFlags & { json?: boolean }) => {
      const view = await withAdmin(flags, (a) => a.showOrder(orderNumber));
      print(flags.json, view, () =>
        [
          describeOrder(view),
          ...view.emails.map((e) => `  email ${describeEmail(e)}`),
          ...view.webhooks.map((w) => `  webhook ${w.event} ${w.eventId} to ${w.url}  ${w.state}  (attempts ${w.attempts})${w.lastError ? ` \u2014 ${w.lastError}` : ''}`),
          ...view.corroborations.map((c) => `  MPIC ${c.outcome} ${c.at} for ${c.address} (${c.method} at ${c.target}): ${c.corroborating}/${c.perspectives} perspectives, RIRs ${c.rirs.join(', ') || 'none'}, request ${c.requestId}${c.used ? '' : ', no email'}`),
          ...view.evidence.map(
            (e) =>
              `  ${e.decision} ${e.decidedAt} by ${e.recipient} (ADN ${e.adn}, ${e.method}, ${e.addressSource}${describeDnssec(e.dns)}) from ${e.sourceIp}` +
              (e.usable ? '' : `\n    not usable: ${e.unusableReason}`),
          ),
        ].join('\n'),
      );
    },
  );

  common(order.command('list').description('list orders, oldest first').addOption(opt('--account <login>', 'only this account\u2019s orders'))).action(
    async (flags: StoreFlags & { json?: boolean; account?: string }) => {
      const views = await withAdmin(flags, (a) => a.listOrders(flags.account));
      print(flags.json, views, () => (views.length === 0 ? 'no orders' : views.map(describeOrder).join('\n')));
    },
  );

  common(order.command('cancel').description('cancel an order: its codes stop working, unsent DCV emails are not sent').argument('<order-number>', 'order number', parseId)).action(
    async (orderNumber: number, flags: StoreFlags & { json?: boolean }) => {
      const view = await withAdmin(flags, (a) => a.cancelOrder(orderNumber));
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
  const template = new Command('template');
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
    const { TemplateStoreError } = await import('../orders/templates.ts');
    if ((flags.account === undefined) === (flags.global !== true)) throw new TemplateStoreError('give exactly one of --account NAME and --global');
    const text = readFileSync(flags.textFile, 'utf8');
    const html = flags.htmlFile === undefined ? undefined : readFileSync(flags.htmlFile, 'utf8');
    const view = await withAdmin(flags, (a) => a.createTemplate(flags.account ?? null, flags.id, { subject: flags.subject, text, ...(html === undefined ? {} : { html }) }));
    print(flags.json, view, () => `created ${describeTemplate(view)}`);
  });

  common(template.command('list').description('list templates').addOption(opt('--account <login>', 'only this account\u2019s templates'))).action(
    async (flags: StoreFlags & { json?: boolean; account?: string }) => {
      const views = await withAdmin(flags, (a) => a.listTemplates(flags.account));
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
  const outbox = new Command('outbox');
  withJson(
    withStoreOptions(
      outbox
        .command('list')
        .description('DCV emails and their delivery state, newest first')
        .addOption(opt('--state <state>', OUTBOX_STATES.join(', ')).choices([...OUTBOX_STATES]))
        .addOption(opt('--order <n>', 'only this order\u2019s emails', parseId))
        .addOption(opt('--limit <n>', 'at most this many', (v) => parseCount(v, 1)).default(DEFAULT_OUTBOX_LIST_LIMIT)),
    ),
  ).action(async (flags: StoreFlags & { json?: boolean; state?: string; order?: number; limit: number }) => {
    const views = await withAdmin(flags, (a) => a.listOutbox({ state: flags.state, orderNumber: flags.order, limit: flags.limit }));
    print(flags.json, views, () => (views.length === 0 ? 'no emails' : views.map(describeEmail).join('\n')));
  });
  return outbox;
}
