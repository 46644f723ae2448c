/**
 * The one logger (pino). Secrets never reach it by design — request bodies are
 * not logged — and redaction is the second line of defence (CONTRACT §7).
 */
import pino, { type Logger } from 'pino';

export type { Logger };

/** Keys whose value is censored wherever they appear at the top level of a log line or one level below it. */
export const SECRET_KEYS = ['password', 'loginPassword', 'body', 'randomValue', 'validationCode'] as const;

/** Exact paths pino's own redaction censors, besides SECRET_KEYS (which `censorSecrets` handles at both levels). */
export const REDACT_PATHS = [...SECRET_KEYS, 'req.headers.authorization', 'req.headers.cookie', 'headers.authorization'];

export const CENSOR = '[redacted]';

/**
 * `*.password` and the like, done before pino serialises a line (its `formatters.log`) or a child's bindings:
 * a value one level down named by SECRET_KEYS is censored in a copy, never in the caller's object. It
 * replaces pino's wildcard paths, which ran every value of every line, strings and numbers included,
 * through the redaction's serialiser: about 15 µs for each request's child logger and log line, a
 * tenth of a whole address-list call (issue 20, docs/PERFORMANCE.md). The copy keeps the value's
 * prototype and every own property, so an Error stays an Error with its message and stack.
 * A frozen object or a locked property is copied all the same (the descriptors change before the copy).
 * Objects interpolated into a message (`%j`, `%o`) are not censored; dcvd logs objects as fields only.
 */
export function censorSecrets(line: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in line) {
    const value = line[key];
    if (value === null || typeof value !== 'object') continue;
    let descriptors: PropertyDescriptorMap | undefined;
    for (const secret of SECRET_KEYS) {
      if (!(secret in value) || (value as Record<string, unknown>)[secret] === undefined) continue;
      descriptors ??= Object.getOwnPropertyDescriptors(value);
      descriptors[secret] = { value: CENSOR, enumerable: true, writable: true, configurable: true };
    }
    if (descriptors) (out ??= { ...line })[key] = Object.create(Object.getPrototypeOf(value), descriptors);
  }
  return out ?? line;
}

/** Logs go to stdout for `serve` and to stderr for commands whose stdout is data (`--json`). */
export function createLogger(level = 'info', fd: 1 | 2 = 1, destination?: pino.DestinationStream): Logger {
  const logger = pino(
    {
      level,
      base: { service: 'dcvd' },
      redact: { paths: REDACT_PATHS, censor: CENSOR },
      formatters: { log: censorSecrets },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd, sync: false }),
  );
  // Bindings are censored as a child is made or rebound (pino would give a child a bindings formatter of
  // its own, not its parent's); every child (fastify's per request too) inherits these two from this logger.
  const child = logger.child;
  const setBindings = logger.setBindings;
  logger.child = function (this: Logger, bindings, options) {
    return child.call(this, censorSecrets(bindings), options);
  } as Logger['child'];
  logger.setBindings = function (this: Logger, bindings) {
    setBindings.call(this, censorSecrets(bindings));
  };
  return logger;
}
