/**
 * `dcvd client get-dcv-emails`, `dcvd client resend` and `dcvd client status`:
 * the two endpoints and CollectSSL's status query through @dcvd/client, against
 * any base URL — a dcvd, or the reseller host (the default). Credentials come from the environment or standard input,
 * never from the command line (argv is visible to every local user).
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import {
  DEFAULT_BASE_URL,
  DcvApiError,
  DcvClient,
  DcvRequestError,
  type CollectSslOrderRef,
  type CollectSslResult,
  type DcvEmailAddressListResult,
  type FetchLike,
  type Product,
} from '@dcvd/client';
import { parseCount, parseDuration } from '../config.ts';
import { opt, parseApiInteger, print, readStdin, withJson } from './options.ts';
import { nodeFetch } from './node-fetch.ts';
import { visibleText } from '../text.ts';

/** The password's variable; deliberately not an option, so that it can never be given in argv. */
export const PASSWORD_ENV = 'DCVD_LOGIN_PASSWORD';

interface ConnectionFlags {
  baseUrl: string;
  loginName: string;
  passwordStdin?: boolean;
  caFile?: string;
  insecure?: boolean;
  timeout: number;
  json?: boolean;
}

interface GetFlags extends ConnectionFlags {
  domain: string;
  product?: Product;
  format?: 1 | 2;
  retries: number;
}

interface ResendFlags extends ConnectionFlags {
  order?: number;
  baseOrder?: number;
  email?: string;
  template?: number;
}

interface StatusFlags extends ConnectionFlags {
  order?: number;
  certificateId?: number;
  baseOrder?: number;
}

const apiInteger = parseApiInteger;

function parseFormat(text: string): 1 | 2 {
  const t = text.trim().toLowerCase();
  if (t === 'text' || t === '1') return 1;
  if (t === 'json' || t === '2') return 2;
  throw new Error(`expected text or json, got ${JSON.stringify(text)}`);
}

function withConnectionOptions(cmd: Command): Command {
  return withJson(
    cmd
      .addOption(opt('--base-url <url>', 'the server: a dcvd (e.g. https://localhost:8443) or the reseller host').default(DEFAULT_BASE_URL))
      .addOption(opt('--login-name <name>', 'the account\u2019s loginName').makeOptionMandatory())
      .addOption(opt('--password-stdin', `read the loginPassword from standard input instead of ${PASSWORD_ENV}`))
      .addOption(opt('--ca-file <file>', 'trust this PEM certificate, e.g. a dcvd\u2019s dcvd-data/tls/localhost.crt'))
      .addOption(opt('--insecure', 'do not verify the server\u2019s certificate: only for a self-signed development server'))
      .addOption(opt('--timeout <duration>', 'per request', parseDuration).default(30_000, '30s')),
  ).addHelpText('after', `\nThe password is read from ${PASSWORD_ENV} or, with --password-stdin, from standard input; never from the command line.`);
}

async function connect(flags: ConnectionFlags, retries = 0): Promise<DcvClient> {
  const password = flags.passwordStdin ? await readStdin() : process.env[PASSWORD_ENV];
  if (password === undefined || password === '') {
    throw new Error(`no password: set ${PASSWORD_ENV} or pass --password-stdin and write it to standard input`);
  }
  let fetch: FetchLike | undefined;
  if (flags.insecure) {
    process.stderr.write(
      'dcvd: warning: --insecure: the server\u2019s certificate is not verified, so anyone on the path can read the password. Use it only with a self-signed development server; --ca-file verifies one.\n',
    );
    fetch = nodeFetch({ rejectUnauthorized: false });
  } else if (flags.caFile) {
    fetch = nodeFetch({ ca: readFileSync(flags.caFile) });
  }
  if (/^http:/i.test(flags.baseUrl)) {
    process.stderr.write('dcvd: warning: an http: base URL sends the password unencrypted; servers answer -1 unless a TLS proxy stands in front.\n');
  }
  return new DcvClient({ baseUrl: flags.baseUrl, loginName: flags.loginName, loginPassword: password, timeoutMs: flags.timeout, retries, ...(fetch ? { fetch } : {}) });
}

/** Prints an API error (as one JSON value with --json) and throws the line `main` writes to stderr. */
function fail(flags: ConnectionFlags, err: unknown): never {
  if (err instanceof DcvApiError) {
    if (flags.json) {
      print(true, { errorCode: err.code, errorMessage: err.message, errorItem: err.item, errorDetail: err.detail }, () => '');
    }
    const item = err.item === undefined ? '' : ` (errorItem: ${err.item})`;
    const detail = err.detail === undefined ? '' : ` (errorDetail: ${err.detail})`;
    throw new Error(`${err.endpoint} answered ${err.code}: ${err.message}${item}${detail}`);
  }
  if (err instanceof DcvRequestError && err.kind === 'network' && /certificate/i.test(err.message)) {
    throw new Error(`${err.message} (for a dcvd with its self-signed certificate, pass --ca-file DATA_DIR/tls/localhost.crt)`);
  }
  throw err;
}

/** The same for an address list (the server's text, from any base URL). */
function describeList(list: DcvEmailAddressListResult): string {
  const lines = [list.domainName || '(the server named no domain)'];
  for (const [level, addresses] of Object.entries(list.levels)) {
    for (const a of addresses) lines.push(`  level ${level}  ${a}`);
  }
  for (const a of list.whoisEmails) lines.push(`  whois    ${a}`);
  for (const [key, values] of Object.entries(list.extra)) for (const v of values) lines.push(`  ${key}  ${v}`);
  return lines.map(visibleText).join('\n');
}

/** CollectSSL's `dcvStatus` in words (its values in @dcvd/client's CollectedSsl). */
const DCV_STATUS_WORDS: Record<number, string> = { 0: 'not started', 1: 'completed (every domain validated)', 2: 'in progress' };

/** A server's answer as lines for a terminal: its text with controls and invisible characters replaced (src/text.ts). */
function describeStatus(s: CollectSslResult): string {
  const lines = [s.orderNumber === undefined ? '(the server named no order)' : `order ${s.orderNumber}`];
  if (s.certificateID !== undefined) lines.push(`  certificate ID  ${s.certificateID}`);
  lines.push(`  status          ${s.statusCode}${s.statusCode === 0 ? ' (being processed)' : ''}`);
  if (s.dcvStatus !== undefined) lines.push(`  DCV             ${s.dcvStatus}${DCV_STATUS_WORDS[s.dcvStatus] ? ` (${DCV_STATUS_WORDS[s.dcvStatus]})` : ''}`);
  if (s.fqdn !== undefined) lines.push(`  domain          ${s.fqdn}`);
  for (const [key, value] of Object.entries(s.extra)) lines.push(`  ${key}  ${value}`);
  for (const line of s.lines) lines.push(`  ${line}`);
  return lines.map(visibleText).join('\n');
}

export function clientCommands(): Command {
  const client = new Command('client');

  withConnectionOptions(
    client
      .command('get-dcv-emails')
      .description('GetDCVEmailAddressList: the acceptable DCV email addresses of a domain, per level')
      .addOption(opt('--domain <name>', 'domainName').makeOptionMandatory())
      .addOption(opt('--product <code>', 'product code, sent only when given (optional: 801 VMC, 803 CMC, or the server\u2019s own)', apiInteger))
      .addOption(opt('--format <text|json>', 'responseFormat: text (1) or json (2, which adds contact addresses from DNS); not sent when omitted', parseFormat))
      .addOption(opt('--retries <n>', 'repeat a request that got no answer (network failure or timeout) up to n times', (v) => parseCount(v, 0)).default(0)),
  ).action(async (flags: GetFlags) => {
    const api = await connect(flags, flags.retries);
    let list: DcvEmailAddressListResult;
    try {
      list = await api.getDcvEmailAddressList({ domainName: flags.domain, product: flags.product, responseFormat: flags.format });
    } catch (err) {
      fail(flags, err);
    }
    print(flags.json, list, () => describeList(list));
  });

  withConnectionOptions(
    client
      .command('resend')
      .description('ResendDCVEmail: send an order\u2019s DCV email again (never retried: a repeat could send it twice)')
      .addOption(opt('--order <n>', 'orderNumber', apiInteger))
      .addOption(opt('--base-order <n>', 'baseOrderNumber (the newest order of the chain)', apiInteger))
      .addOption(opt('--email <address>', 'dcvEmailAddress: one offered by GetDCVEmailAddressList in the last 24 hours (default: the last recipient)'))
      .addOption(opt('--template <id>', 'dcvTemplateID', apiInteger)),
  ).action(async (flags: ResendFlags) => {
    if (flags.order === undefined && flags.baseOrder === undefined) throw new Error('give --order N or --base-order N');
    const api = await connect(flags);
    const order = flags.order !== undefined ? { orderNumber: flags.order, baseOrderNumber: flags.baseOrder } : { baseOrderNumber: flags.baseOrder! };
    let extra: Record<string, string>;
    try {
      ({ extra } = await api.resendDcvEmail(order, { dcvEmailAddress: flags.email, dcvTemplateId: flags.template }));
    } catch (err) {
      fail(flags, err);
    }
    const which = flags.order !== undefined ? `order ${flags.order}` : `the newest order of base order ${flags.baseOrder}`;
    print(flags.json, { errorCode: 0, ...extra }, () => `ResendDCVEmail accepted for ${which}${flags.email ? ` to ${flags.email}` : ''}`);
  });

  withConnectionOptions(
    client
      .command('status')
      .alias('collect-ssl')
      .description('CollectSSL (queryType 0): an order\u2019s status and its DCV status; exit 1 with -20 for an order cancelled or declined')
      .addOption(opt('--order <n>', 'orderNumber', apiInteger))
      .addOption(opt('--certificate-id <n>', 'certificateID (the one AutoApplyOrder answered)', apiInteger))
      .addOption(opt('--base-order <n>', 'baseOrderNumber (the newest order of the chain)', apiInteger)),
  ).action(async (flags: StatusFlags) => {
    if (flags.order === undefined && flags.certificateId === undefined && flags.baseOrder === undefined) throw new Error('give --order N, --certificate-id N or --base-order N');
    const api = await connect(flags);
    let status: CollectSslResult;
    try {
      const { order, certificateId: certificateID, baseOrder: baseOrderNumber } = flags;
      const ref: CollectSslOrderRef =
        order !== undefined ? { orderNumber: order, certificateID, baseOrderNumber } : certificateID !== undefined ? { certificateID, baseOrderNumber } : { baseOrderNumber: baseOrderNumber! };
      status = await api.collectSsl(ref, { showStatusDetails: true, showFQDN: true });
    } catch (err) {
      fail(flags, err);
    }
    print(flags.json, status, () => describeStatus(status));
  });

  return client;
}
