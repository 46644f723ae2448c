/** Polling for a condition in tests that watch a background worker. */
import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves once `check` is true; throws after `timeoutMs`, naming `what`. */
export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}
