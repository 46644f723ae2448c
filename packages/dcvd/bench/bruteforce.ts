/**
 * Brute force against the credential check (issue 8), measured: an attacker
 * sends 60 password guesses per minute for 30 minutes (simulated time, a
 * real server over HTTPS, default limits) and we count the guesses that "get
 * through" — that reach a password comparison that could have succeeded (log
 * reason `wrong-password`). Guesses refused by a lockout or an IP block can
 * never succeed, whatever the password.
 *
 * Three attackers: one login from one IP; 100 logins from one IP; 100 logins
 * from 60 IPs. Run: `node --import tsx bench/bruteforce.ts`.
 */
import { ManualClock } from '../src/deps.ts';
import { form, RESEND_PATH, startTestServer } from '../test/support/server.ts';

const MINUTES = 30;
const PER_MINUTE = 60;

async function scenario(name: string, logins: number, ips: number): Promise<string> {
  const clock = new ManualClock(Date.UTC(2026, 10, 23));
  const s = await startTestServer({ logLevel: 'info' }, { clock });
  try {
    for (let i = 0; i < logins; i++) await s.createAccount(`victim${i}`);
    let attempt = 0;
    for (let minute = 0; minute < MINUTES; minute++) {
      for (let k = 0; k < PER_MINUTE; k++, attempt++) {
        const login = `victim${attempt % logins}`;
        await s.post(RESEND_PATH, form({ loginName: login, loginPassword: `guess-${attempt}`, orderNumber: '1' }), {
          localAddress: `127.0.1.${1 + (attempt % ips)}`,
        });
        clock.advance(60_000 / PER_MINUTE);
      }
    }
    const reasons = new Map<string, number>();
    for (const l of s.logs) if (l.msg === 'request' && l.code === -16) reasons.set(String(l.reason), (reasons.get(String(l.reason)) ?? 0) + 1);
    const through = reasons.get('wrong-password') ?? 0;
    const detail = [...reasons].map(([r, n]) => `${r} ${n}`).join(', ');
    return `${name.padEnd(36)} ${String(MINUTES * PER_MINUTE).padStart(5)} guesses, ${String(through).padStart(4)} got through = ${(through / MINUTES).toFixed(2)}/min  (${detail})`;
  } finally {
    await s.stop();
  }
}

console.log(`Brute force, default limits (5 failures lock an account 15 min; 50 failures in 15 min block an IP 15 min), ${PER_MINUTE} guesses/min for ${MINUTES} min:`);
console.log(await scenario('one login, one IP', 1, 1));
console.log(await scenario('100 logins, one IP', 100, 1));
console.log(await scenario('100 logins, 60 IPs', 100, 60));
