/** `dcvd serve` as a real child process: started, talked to over HTTPS, killed. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { BIN } from './cli.ts';

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  ca: string;
  exited: Promise<number | null>;
  /** What the process wrote to stderr so far (its start-up lines: addresses, role). */
  stderr(): string;
  /** The answer's body; `agent` e.g. a keep-alive one (default: Node's global agent). Rejects when the connection dies first. */
  post(path: string, body: string, agent?: https.Agent): Promise<string>;
}

/**
 * Starts `dcvd serve --listen 127.0.0.1:0 …args` with DCVD_DATA_DIR=dataDir;
 * resolves once it listens. `onLogLine` receives each JSON log line (stdout).
 */
export async function startServe(
  dataDir: string,
  args: string[],
  opts: { timeoutMs?: number; onLogLine?: (line: Record<string, unknown>) => void } = {},
): Promise<ServeProcess> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', ...args], {
    env: { ...process.env, DCVD_DATA_DIR: dataDir },
    stdio: ['ignore', opts.onLogLine ? 'pipe' : 'ignore', 'pipe'],
  });
  if (opts.onLogLine) {
    const onLine = opts.onLogLine;
    let pending = '';
    child.stdout!.on('data', (c: Buffer) => {
      pending += c.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        // Several processes (`--processes`) share the pipe: a batch of lines longer than PIPE_BUF may interleave with another's.
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        onLine(parsed);
      }
    });
  }
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), timeoutMs);
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (/HTTPS on .*\n/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${stderr}`));
    });
  });
  const port = Number(/https:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr)![1]);
  const ca = readFileSync(/certificate: (\S+)\)/.exec(stderr)![1]!, 'utf8');
  const post = (path: string, body: string, agent?: https.Agent) =>
    new Promise<string>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port, path, method: 'POST', ca, servername: 'localhost', headers: { 'content-type': 'application/x-www-form-urlencoded' }, ...(agent ? { agent } : {}) },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve(text));
          res.on('error', reject); // the server died mid-answer
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  return { child, port, ca, exited, post, stderr: () => stderr };
}
