/** A DCV email really delivered to the test SMTP server, and the confirmation link and code it carries (CONTRACT §5, §6). */
import type { Clock } from '../../src/deps.ts';
import type { SmtpSink, SinkMessage } from './smtp-sink.ts';
import { form, type TestServer } from './server.ts';
import { codeIn, createOrder, getList, OK, resend } from './dcv.ts';

export interface MailedCode {
  code: string;
  /** The confirmation link as the email's text carries it. */
  link: string;
  mail: SinkMessage;
}

/** Creates an order, offers the address (24-hour rule), resends and waits for the email. */
export async function mailedCode(
  server: TestServer,
  sink: SmtpSink,
  clock: Clock,
  order: { login: string; orderNumber: number; domain: string; address: string; create?: boolean },
): Promise<MailedCode> {
  if (order.create !== false) await createOrder(server, clock, order.login, { domain: order.domain, orderNumber: order.orderNumber });
  await getList(server, order.login, order.domain);
  const before = sink.messages.length;
  const r = await resend(server, order.login, { orderNumber: order.orderNumber, dcvEmailAddress: order.address });
  if (r.body !== OK) throw new Error(`ResendDCVEmail failed: ${r.body}`);
  const mail = (await sink.waitFor(before + 1))[before]!;
  await server.outbox!.idle();
  const code = codeIn(mail.parsed.text);
  const link = new RegExp(`https?://\\S+/dcv/confirm/${code}`).exec(mail.parsed.text ?? '')?.[0];
  if (!link) throw new Error('no confirmation link in the email');
  return { code, link, mail };
}

/** The anti-CSRF token of the (first) form on a page. */
export function csrfOf(html: string): string {
  const m = /name="csrf" value="([^"]+)"/.exec(html);
  if (!m) throw new Error('no csrf field on the page');
  return m[1]!;
}

/** Mails a code for a new order `orderNumber` of `login` (on `domain`) and decides it on the confirmation page, as the recipient does. */
export async function decideByMail(
  server: TestServer,
  sink: SmtpSink,
  clock: Clock,
  order: { login: string; orderNumber: number; domain: string },
  decision: 'approve' | 'decline',
): Promise<void> {
  const m = await mailedCode(server, sink, clock, { ...order, address: 'admin@example.com' });
  const page = await server.request({ method: 'GET', path: new URL(m.link).pathname });
  const r = await server.post('/dcv/confirm', form({ code: m.code, csrf: csrfOf(page.body), decision }), { headers: { 'sec-fetch-site': 'same-origin' } });
  if (r.status !== 200) throw new Error(`the decision answered ${r.status}`);
}
