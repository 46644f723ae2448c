/**
 * The one logger (pino). Secrets never reach it by design — request bodies are
 * not logged — and redaction is the second line of defence (CONTRACT §7).
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'password',
  'loginPassword',
  '*.password',
  '*.loginPassword',
  'body',
  '*.body',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'randomValue',
  '*.randomValue',
  '*.validationCode',
  'validationCode',
];

/** Logs go to stdout for `serve` and to stderr for commands whose stdout is data (`--json`). */
export function createLogger(level = 'info', fd: 1 | 2 = 1, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'dcvd' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd, sync: false }),
  );
}
