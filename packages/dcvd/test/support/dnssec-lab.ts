/**
 * A DNSSEC lab on loopback from Debian's packages (CONTRACT §3): zones signed
 * with ldns-keygen/ldns-signzone (ldnsutils), served by NSD, and Unbound as
 * the validating resolver with trust anchors for the signed zones. Both run as
 * child processes of the test, unprivileged, in a temporary directory, on free
 * loopback ports; Unbound's root hints point at loopback so nothing leaves the
 * machine.
 *
 * Zones (all under `lab.example.com` parents served by the lab's own `com.`):
 *  - secure.example.com   signed (NSEC3), trust anchor: answers come with AD
 *  - bogus.example.com    signed with signatures that expired in 2020: SERVFAIL + EDE
 *  - forged.example.com   signed, then a TXT record changed after signing: SERVFAIL + EDE 6
 *  - insecure.example.com unsigned, no anchor: answers without AD
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import { createDnsClient } from '../../src/dns/client.ts';

const TOOLS = ['unbound', 'nsd', 'ldns-keygen', 'ldns-signzone'] as const;
const DIRS = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function which(tool: string): string | undefined {
  for (const dir of DIRS) {
    const path = join(dir, tool);
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** node:test's `skip`: false when unbound, nsd and ldnsutils are installed, else one clear line. */
export function dnssecLabOrSkip(): false | string {
  const missing = TOOLS.filter((t) => which(t) === undefined);
  if (missing.length === 0) return false;
  const line = `skipped: the DNSSEC lab needs Debian's unbound, nsd and ldnsutils (missing: ${missing.join(', ')}; apt-get install -y unbound nsd ldnsutils)`;
  if (process.env.DCVD_REQUIRE_DNSSEC_LAB === '1') throw new Error(`${line}, and DCVD_REQUIRE_DNSSEC_LAB=1`);
  return line;
}

export interface DnssecLab {
  /** "127.0.0.1:port" of the validating resolver (Unbound). */
  resolver: string;
  /** "127.0.0.1:port" of the authoritative server (NSD): answers without validating, never with AD. */
  authoritative: string;
  /** A signed name that the resolver answers with AD. */
  probeSecure: string;
  /** A name in the zone with expired signatures. */
  probeBogus: string;
  /** Stops the resolver (the authoritative server keeps running). */
  stopResolver(): Promise<void>;
  /** Starts the resolver again on the same port. */
  startResolver(): Promise<void>;
  close(): Promise<void>;
}

function run(tool: string, args: string[], cwd: string): string {
  const r = spawnSync(which(tool)!, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

function zoneText(origin: string, records: string[]): string {
  return [
    `$ORIGIN ${origin}.`,
    '$TTL 300',
    `@ IN SOA ns.${origin}. hostmaster.${origin}. 1 3600 600 86400 300`,
    `@ IN NS ns.${origin}.`,
    'ns IN A 127.0.0.1',
    ...records,
    '',
  ].join('\n');
}

/** Signs `<dir>/<zone>.zone` into `<zone>.zone.signed`; returns the KSK's DNSKEY line (the trust anchor). */
function sign(dir: string, zone: string, extra: string[]): string {
  const ksk = run('ldns-keygen', ['-a', 'ECDSAP256SHA256', '-k', zone], dir);
  const zsk = run('ldns-keygen', ['-a', 'ECDSAP256SHA256', zone], dir);
  run('ldns-signzone', [...extra, `${zone}.zone`, ksk, zsk], dir);
  return readFileSync(join(dir, `${ksk}.key`), 'utf8').trim();
}

/** Resolves once `name` is answered NOERROR (with AD when `ad`) by `port`, or throws after `ms`. */
async function answered(port: number, name: string, ms: number, child: ChildProcess, log: () => string): Promise<void> {
  const client = createDnsClient({ resolvers: [{ host: '127.0.0.1', port }], timeoutMs: 500, attempts: 1 });
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`DNSSEC lab server exited (${child.exitCode}): ${log()}`);
    try {
      const r = await client.txt(name);
      if (r.rcode === 'NOERROR' && r.records.length > 0) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`DNSSEC lab: ${name} not answered on port ${port} within ${ms} ms: ${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function startChild(tool: string, args: string[], dir: string): { child: ChildProcess; output: () => string } {
  const child = spawn(which(tool)!, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (c: Buffer) => {
    output = (output + c.toString()).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return { child, output: () => output };
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export async function startDnssecLab(): Promise<DnssecLab> {
  const dir = mkdtempSync(join(tmpdir(), 'dcvd-dnssec-lab-'));
  const [nsdPort, unboundPort] = [await freePort(), await freePort()];
  const anchors: string[] = [];

  writeFileSync(join(dir, 'com.zone'), zoneText('com', []));
  writeFileSync(
    join(dir, 'secure.example.com.zone'),
    zoneText('secure.example.com', [
      'probe IN TXT "signed"',
      '_validation-contactemail IN TXT "txt-contact@secure.example.com"',
      '@ IN CAA 0 contactemail "caa-contact@secure.example.com"',
    ]),
  );
  // NSEC3 (RFC 5155), as BR 3.2.2.4 requires the resolver to support.
  anchors.push(sign(dir, 'secure.example.com', ['-n']));
  writeFileSync(join(dir, 'bogus.example.com.zone'), zoneText('bogus.example.com', ['probe IN TXT "expired"', '_validation-contactemail IN TXT "txt-contact@bogus.example.com"']));
  anchors.push(sign(dir, 'bogus.example.com', ['-i', '20190101000000', '-e', '20200101000000']));
  writeFileSync(join(dir, 'forged.example.com.zone'), zoneText('forged.example.com', ['_validation-contactemail IN TXT "txt-contact@forged.example.com"']));
  anchors.push(sign(dir, 'forged.example.com', []));
  // An attacker's TXT record: the signature still covers the original value.
  const forged = join(dir, 'forged.example.com.zone.signed');
  const signed = readFileSync(forged, 'utf8');
  if (!signed.includes('"txt-contact@forged.example.com"')) throw new Error('DNSSEC lab: the signed zone does not hold the TXT record to forge');
  writeFileSync(forged, signed.replace('"txt-contact@forged.example.com"', '"attacker@evil.example.net"'));
  writeFileSync(
    join(dir, 'insecure.example.com.zone'),
    zoneText('insecure.example.com', ['probe IN TXT "unsigned"', '_validation-contactemail IN TXT "txt-contact@insecure.example.com"']),
  );
  writeFileSync(join(dir, 'anchors.key'), `${anchors.join('\n')}\n`);
  // Root hints on loopback: a query outside the lab's zones never leaves the machine.
  writeFileSync(join(dir, 'root.hints'), '.  3600000  NS  a.root.lab.\na.root.lab.  3600000  A  127.0.0.1\n');

  const zones: [string, string][] = [
    ['com', 'com.zone'],
    ['secure.example.com', 'secure.example.com.zone.signed'],
    ['bogus.example.com', 'bogus.example.com.zone.signed'],
    ['forged.example.com', 'forged.example.com.zone.signed'],
    ['insecure.example.com', 'insecure.example.com.zone'],
  ];
  writeFileSync(
    join(dir, 'nsd.conf'),
    [
      'server:',
      '  ip-address: 127.0.0.1',
      `  port: ${nsdPort}`,
      '  username: ""',
      '  chroot: ""',
      `  zonesdir: "${dir}"`,
      '  database: ""',
      `  zonelistfile: "${dir}/zone.list"`,
      `  xfrdfile: "${dir}/xfrd.state"`,
      `  xfrdir: "${dir}"`,
      `  pidfile: "${dir}/nsd.pid"`,
      '  server-count: 1',
      '  do-ip6: no',
      '  verbosity: 1',
      'remote-control:',
      '  control-enable: no',
      ...zones.flatMap(([name, file]) => ['zone:', `  name: ${name}`, `  zonefile: ${file}`]),
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'unbound.conf'),
    [
      'server:',
      '  interface: 127.0.0.1',
      `  port: ${unboundPort}`,
      '  do-ip6: no',
      '  chroot: ""',
      '  username: ""',
      `  directory: "${dir}"`,
      `  pidfile: "${dir}/unbound.pid"`,
      '  use-syslog: no',
      '  logfile: ""',
      '  verbosity: 1',
      '  val-log-level: 2',
      '  num-threads: 1',
      '  so-reuseport: no',
      '  do-not-query-localhost: no',
      '  module-config: "validator iterator"',
      `  trust-anchor-file: "${dir}/anchors.key"`,
      `  root-hints: "${dir}/root.hints"`,
      '  ede: yes',
      '  qname-minimisation: no',
      // Answers are not kept between the test's cases longer than they need to be.
      '  cache-max-ttl: 5',
      '  cache-max-negative-ttl: 5',
      '  access-control: 127.0.0.0/8 allow',
      'remote-control:',
      '  control-enable: no',
      ...zones.flatMap(([name]) => ['stub-zone:', `  name: "${name}"`, `  stub-addr: 127.0.0.1@${nsdPort}`]),
      '',
    ].join('\n'),
  );

  const nsd = startChild('nsd', ['-d', '-c', join(dir, 'nsd.conf')], dir);
  let unbound: ReturnType<typeof startChild> | undefined;
  const startResolver = async () => {
    unbound = startChild('unbound', ['-d', '-c', join(dir, 'unbound.conf')], dir);
    await answered(unboundPort, 'probe.insecure.example.com', 60_000, unbound.child, unbound.output);
  };
  try {
    await answered(nsdPort, 'probe.insecure.example.com', 60_000, nsd.child, nsd.output);
    await startResolver();
  } catch (err) {
    await stopChild(unbound?.child);
    await stopChild(nsd.child);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    resolver: `127.0.0.1:${unboundPort}`,
    authoritative: `127.0.0.1:${nsdPort}`,
    probeSecure: 'probe.secure.example.com',
    probeBogus: 'probe.bogus.example.com',
    stopResolver: () => stopChild(unbound?.child),
    startResolver,
    async close() {
      await stopChild(unbound?.child);
      await stopChild(nsd.child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
