/** What a webhook URL may be: checked where an account's URL is set and where the global --webhook-url is read. */

/** The longest URL taken (the internal API's limit too): a receiver's address, not a place for data. */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

/**
 * The Fetch standard's "bad ports" (fetch.spec.whatwg.org, "port blocking"): services that speak other protocols
 * (SMTP, IRC, X11, ...), where an HTTP request could be read as their commands. Browsers and fetch refuse them, and
 * so does dcvd for its webhooks; port 0 names no port at all.
 */
const BAD_PORTS: ReadonlySet<number> = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115,
  117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587,
  601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669,
  6679, 6697, 10080,
]);

/** An http(s) URL without credentials (the signature authenticates), of at most 2,048 characters, on a port HTTP may use; throws otherwise. */
export function checkWebhookUrl(url: string): string {
  if (url.length > MAX_WEBHOOK_URL_LENGTH) throw new Error(`a webhook URL must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`webhook URL ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('a webhook URL must be https:// (or http://)');
  if (u.username !== '' || u.password !== '') throw new Error('a webhook URL must not carry credentials (the signature authenticates)');
  const port = Number(u.port);
  if (u.port !== '' && (port === 0 || BAD_PORTS.has(port))) throw new Error(`a webhook URL cannot use port ${port}: it belongs to another protocol (the Fetch standard's blocked ports) or to none`);
  return u.toString();
}
