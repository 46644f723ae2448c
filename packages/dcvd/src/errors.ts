/** Errors shared across modules; this file imports nothing, so it can never sit in an import cycle. */

export type ErrorKind = 'invalid' | 'not-found' | 'conflict';

/** An operator's request refused. `kind` picks the internal API's status: bad input, a named object that does not exist, or a clash with one that does. */
export class OperatorError extends Error {
  constructor(
    message: string,
    readonly kind: ErrorKind = 'invalid',
  ) {
    super(message);
  }
}
