/**
 * A `fetch` for @dcvd/client on node:https, for what the global fetch cannot
 * do without an extra package: trust one certificate (a dcvd's self-signed
 * one) or, for a development server only, none. The client's `fetch` option
 * exists for this; the client itself stays free of Node imports.
 */
import http from 'node:http';
import https from 'node:https';
import type { FetchLike, FetchResponseLike } from '@dcvd/client';

export interface NodeFetchTls {
  /** PEM certificates to trust instead of the system's. */
  ca?: string | Buffer;
  /** false: accept any certificate (`--insecure`). */
  rejectUnauthorized?: boolean;
}

export function nodeFetch(tls: NodeFetchTls = {}): FetchLike {
  return (url, init) =>
    new Promise<FetchResponseLike>((resolve, reject) => {
      const target = new URL(url);
      const secure = target.protocol === 'https:';
      const body = Buffer.from(init.body, 'utf8');
      const req = (secure ? https : http).request(
        target,
        {
          method: init.method,
          headers: { ...init.headers, 'content-length': body.length },
          signal: init.signal,
          ...(secure ? { ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized !== false } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            resolve({ status: res.statusCode ?? 0, text: async () => text });
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
}
