/**
 * The sandbox's mailbox (issue 17): every DCV email the outbox hands to the
 * .eml transport is also kept as JSON under `<dataDir>/sandbox/mail/`, with
 * the confirmation link and code it carries, for the mail viewer and its JSON
 * API. The files are private (0600), as the .eml files are: they hold what the
 * email holds, the validation code, and nothing more.
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../deps.ts';
import type { Database } from '../store/schema.ts';
import type { MailTransport } from '../mail/transport.ts';
import type { OutgoingEmail } from '../mail/message.ts';
import { confirmationUrl } from '../outbox/outbox.ts';
import { canonicalCode } from '../orders/random-values.ts';
import { OperatorError } from '../errors.ts';

export interface CapturedMail {
  /** The Message-ID without its angle brackets: the id in URLs and file names. */
  id: string;
  messageId: string;
  from: string;
  to: string;
  subject: string;
  text: string;
  html: string | null;
  /** Sandbox-clock time the transport accepted it. */
  sentAt: number;
  confirmationUrl: string | null;
  code: string | null;
}

export interface MailView {
  id: string;
  messageId: string;
  to: string;
  subject: string;
  sentAt: string;
  orderNumber: number | null;
  domain: string | null;
  /** The outbox's delivery state of this email (delivered once the worker recorded it). */
  state: string | null;
  /** The order's DCV status now: awaiting, validated, declined, cancelled. */
  orderStatus: string | null;
  confirmationUrl: string | null;
  code: string | null;
  hasHtml: boolean;
}

export interface MailDetail extends MailView {
  from: string;
  text: string;
  html: string | null;
}

export interface MailFilter {
  to?: string | undefined;
  order?: number | undefined;
  limit: number;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}@[A-Za-z0-9][A-Za-z0-9.-]{0,127}$/;
const LINK = /https?:\/\/[^\s<>"']+\/dcv\/confirm\/([0-9A-Za-z-]{26,40})/;
const BARE_CODE = /\b[0-9A-Z]{26}\b/g;

/** The confirmation link and code an email carries: its link, or a bare code (a template without the link). */
export function linkIn(email: { text: string; html?: string | undefined | null }, publicUrl: string): { url: string; code: string } | null {
  for (const body of [email.text, email.html ?? '']) {
    const m = LINK.exec(body);
    const code = m ? canonicalCode(m[1]!) : undefined;
    if (m && code) return { url: m[0], code };
  }
  for (const candidate of email.text.match(BARE_CODE) ?? []) {
    const code = canonicalCode(candidate);
    if (code) return { url: confirmationUrl(publicUrl, code), code };
  }
  return null;
}

export class MailCapture {
  private readonly byId = new Map<string, CapturedMail>();
  readonly dir: string;

  constructor(
    private readonly dataDir: string,
    private readonly clock: Clock,
  ) {
    this.dir = join(dataDir, 'sandbox', 'mail');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const file of readdirSync(this.dir)) {
      if (!file.endsWith('.json')) continue;
      try {
        const mail = JSON.parse(readFileSync(join(this.dir, file), 'utf8')) as CapturedMail;
        if (ID.test(mail.id)) this.byId.set(mail.id, mail);
      } catch {
        // A torn or foreign file is not an email of ours.
      }
    }
  }

  /** The transport, keeping a copy of each email it accepted. */
  wrap(inner: MailTransport, publicUrl: () => string): MailTransport {
    return {
      send: async (email: OutgoingEmail) => {
        const result = await inner.send(email);
        if (result.accepted) await this.keep(email, publicUrl());
        return result;
      },
      close: () => inner.close(),
    };
  }

  private async keep(email: OutgoingEmail, publicUrl: string): Promise<void> {
    const id = email.messageId.replace(/^<|>$/g, '');
    if (!ID.test(id)) return;
    const link = linkIn(email, publicUrl);
    const mail: CapturedMail = {
      id,
      messageId: email.messageId,
      from: email.from,
      to: email.to,
      subject: email.subject,
      text: email.text,
      html: email.html ?? null,
      sentAt: this.clock.now(),
      confirmationUrl: link?.url ?? null,
      code: link?.code ?? null,
    };
    const tmp = join(this.dir, `.${id}.${randomUUID()}.tmp`);
    await writeFile(tmp, JSON.stringify(mail), { mode: 0o600 });
    await rename(tmp, join(this.dir, `${id}.json`));
    this.byId.set(id, mail);
  }

  all(): CapturedMail[] {
    return [...this.byId.values()].sort((a, b) => b.sentAt - a.sentAt || b.id.localeCompare(a.id));
  }

  get(id: string): CapturedMail {
    const mail = ID.test(id) ? this.byId.get(id) : undefined;
    if (!mail) throw new OperatorError(`no captured email ${JSON.stringify(id.slice(0, 300))}`, 'not-found');
    return mail;
  }

  /** Deletes one email from the viewer (its JSON and its .eml file). */
  async delete(id: string): Promise<void> {
    this.get(id);
    this.byId.delete(id);
    await rm(join(this.dir, `${id}.json`), { force: true });
    await rm(join(this.dataDir, 'outbox', `${id}.eml`), { force: true });
  }

  /** Deletes every email; one a concurrent delete or clear removed first is not counted (nor an error). */
  async clear(): Promise<number> {
    let deleted = 0;
    for (const id of [...this.byId.keys()]) {
      if (!this.byId.has(id)) continue;
      await this.delete(id);
      deleted += 1;
    }
    return deleted;
  }

  /** Views, newest first, with each email's order and delivery state from the store. */
  async views(db: Kysely<Database>, filter: MailFilter): Promise<MailView[]> {
    const to = filter.to?.toLowerCase();
    let mails = this.all().filter((m) => to === undefined || m.to.toLowerCase() === to);
    const facts = await this.facts(db, mails);
    if (filter.order !== undefined) mails = mails.filter((m) => facts.get(m.messageId)?.order_number === filter.order);
    return mails.slice(0, filter.limit).map((m) => view(m, facts.get(m.messageId)));
  }

  async detail(db: Kysely<Database>, id: string): Promise<MailDetail> {
    const mail = this.get(id);
    const facts = await this.facts(db, [mail]);
    return { ...view(mail, facts.get(mail.messageId)), from: mail.from, text: mail.text, html: mail.html };
  }

  private async facts(db: Kysely<Database>, mails: CapturedMail[]): Promise<Map<string, Facts>> {
    const found = new Map<string, Facts>();
    // Chunks keep the IN list within every database's parameter limit.
    for (let i = 0; i < mails.length; i += 500) {
      const ids = mails.slice(i, i + 500).map((m) => m.messageId);
      const rows = await db
        .selectFrom('outbox as o')
        .innerJoin('orders as ord', 'ord.id', 'o.order_id')
        .select(['o.message_id', 'o.state', 'ord.order_number', 'ord.domain', 'ord.dcv_status'])
        .where('o.message_id', 'in', ids)
        .execute();
      for (const r of rows) found.set(r.message_id, r);
    }
    return found;
  }
}

interface Facts {
  state: string;
  order_number: number;
  domain: string;
  dcv_status: string;
}

function view(m: CapturedMail, f: Facts | undefined): MailView {
  return {
    id: m.id,
    messageId: m.messageId,
    to: m.to,
    subject: m.subject,
    sentAt: new Date(m.sentAt).toISOString(),
    orderNumber: f?.order_number ?? null,
    domain: f?.domain ?? null,
    state: f?.state ?? null,
    orderStatus: f?.dcv_status ?? null,
    confirmationUrl: m.confirmationUrl,
    code: m.code,
    hasHtml: m.html !== null,
  };
}
