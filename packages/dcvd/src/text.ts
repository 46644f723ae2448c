/**
 * What one line of text that dcvd shows or sends may hold, wherever it comes from: a header field, a Subject, a
 * login, a product's or the CA's name. A leaf: it imports nothing.
 */

/**
 * C0 controls (CR, LF, TAB, NUL, ...), DEL, C1 controls and the Unicode line and paragraph separators: any of them
 * in a header field could end the header line in some parser, which is what header injection needs; in a name
 * shown on a page or a terminal they break its line.
 */
export const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/** Runs of the same characters, to replace (global: for `replace`, never `test`). */
export const CONTROL_RUNS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

/**
 * Code points that show nothing or show something else: format characters (Cf: zero-width space and joiners, BOM,
 * soft hyphen, bidi controls, which reorder what a terminal or page shows), every other default-ignorable code
 * point (combining grapheme joiner, Hangul fillers, variation selectors), private use (Co), lone surrogates (Cs)
 * and unassigned code points (Cn). Two names that differ only by them look the same.
 */
export const INVISIBLE = /[\p{Cf}\p{Default_Ignorable_Code_Point}\p{Co}\p{Cs}\p{Cn}]/u;
export const INVISIBLE_TEXT = 'invisible characters (format, default-ignorable, private-use, unassigned or surrogate code points)';

/**
 * Why `text` is not one line of visible text of 1 to `max` characters once the whitespace around it is trimmed, or
 * undefined when it is. Controls are looked for before the trim, so a trailing newline is refused, not dropped.
 */
export function displayLineProblem(text: string, max: number): string | undefined {
  if (CONTROL_CHARS.test(text)) return 'must be one line without control characters';
  if (INVISIBLE.test(text)) return `must not contain ${INVISIBLE_TEXT}`;
  const trimmed = text.trim();
  if (trimmed === '' || [...trimmed].length > max) return `must be 1 to ${max} characters`;
  return undefined;
}

/** Every control and invisible code point (see above), to replace. */
const UNSHOWABLE = new RegExp(`${CONTROL_CHARS.source}|${INVISIBLE.source}`, 'gu');

/**
 * `text` with every control character and invisible code point replaced by U+FFFD: text from a client (a
 * User-Agent) that a page or an operator's terminal may show, where an ESC or a C1 CSI (U+009B) would start a
 * terminal escape sequence and a bidi override would reorder what is shown.
 */
export function visibleText(text: string): string {
  return text.replace(UNSHOWABLE, '\ufffd');
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A header field's value as node hands it over, one latin1 character per byte, read as the UTF-8 that clients
 * send when its bytes are valid UTF-8; as it is otherwise (latin1, or not bytes at all).
 */
export function headerText(value: string): string {
  if (!/[\u0080-\u00ff]/.test(value) || /[^\u0000-\u00ff]/.test(value)) return value;
  try {
    return UTF8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return value;
  }
}
