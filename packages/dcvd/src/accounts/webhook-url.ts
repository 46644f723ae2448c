/** What a webhook URL may be: checked where an account's URL is set and where the global --webhook-url is read. */
/** An http(s) URL without credentials (the signature authenticates); throws otherwise. */
export function checkWebhookUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`webhook URL ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('a webhook URL must be https:// (or http://)');
  if (u.username !== '' || u.password !== '') throw new Error('a webhook URL must not carry credentials (the signature authenticates)');
  return u.toString();
}
