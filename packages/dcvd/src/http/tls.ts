/**
 * The HTTPS certificate (CONTRACT §8): the operator's, or on first start a
 * self-signed one for localhost generated into the data directory.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TlsMaterial {
  key: string;
  cert: string;
  certPath: string;
  /** True when this call generated the certificate. */
  generated: boolean;
}

export async function loadOrCreateCertificate(opts: {
  dataDir: string;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
}): Promise<TlsMaterial> {
  if (opts.tlsCert || opts.tlsKey) {
    if (!opts.tlsCert || !opts.tlsKey) throw new Error('--tls-cert and --tls-key go together');
    return { cert: readFileSync(opts.tlsCert, 'utf8'), key: readFileSync(opts.tlsKey, 'utf8'), certPath: opts.tlsCert, generated: false };
  }
  const dir = join(opts.dataDir, 'tls');
  const certPath = join(dir, 'localhost.crt');
  const keyPath = join(dir, 'localhost.key');
  if (existsSync(certPath) && existsSync(keyPath)) {
    return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8'), certPath, generated: false };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Loaded only to generate (first start): selfsigned and its X.509 stack are several MiB that every later
  // start, and every API process of --processes, would otherwise carry (issue 20).
  const { generate } = await import('selfsigned');
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + 825 * 86_400_000);
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: notBefore,
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  writeFileSync(keyPath, pems.private, { mode: 0o600 });
  writeFileSync(certPath, pems.cert, { mode: 0o644 });
  return { cert: pems.cert, key: pems.private, certPath, generated: true };
}
