/**
 * How `serve` delivers DCV emails: the transport of its configuration. Imported by the processes that
 * deliver only (nodemailer is not loaded by a `--role api` process; its settings checks are in settings.ts).
 */
import { join } from 'node:path';
import type { DcvEmailConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import { smtpTimeoutsFor } from './outbox.ts';
import { createFileTransport, createSmtpTransport, type MailTransport } from '../mail/transport.ts';

/** Pooled SMTP with `--smtp-url`; otherwise the embedded default, `.eml` files under `<dataDir>/outbox/`. */
export function createMailTransport(config: DcvEmailConfig, dataDir: string, logger: Logger): MailTransport {
  if (config.smtpUrl) {
    return createSmtpTransport(config.smtpUrl, { maxConnections: config.outbox.concurrency, ...smtpTimeoutsFor(config.outbox) });
  }
  return createFileTransport(join(dataDir, 'outbox'), logger);
}
