// A programmable DNS server on loopback for tests, in the spirit of Pebble's
// challtestsrv: answers are set per name (and type), and the server can also
// fail, stall, truncate or drop. UDP and TCP share one port, so a client that
// falls back to TCP reaches the same server.
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { Answer, CaaData, DecodedPacket, OptAnswer, PacketOpt, Packet } from 'dns-packet';
import assert from 'node:assert/strict';
import { DnsError } from '../../src/dns/client.ts';

/** The DnsError a lookup fails with (the test fails if it succeeds or throws anything else). */
export async function dnsError(promise: Promise<unknown>): Promise<DnsError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof DnsError, `expected a DnsError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the lookup to fail');
}

export type Transport = 'udp' | 'tcp';

export interface LoggedQuery {
  name: string;
  type: string;
  transport: Transport;
  id: number;
  /** The query's AD bit (RFC 6840 §5.7). */
  authenticatedData: boolean;
  /** The EDNS0 UDP payload size the query offered, or undefined without OPT. */
  udpPayloadSize: number | undefined;
}

export interface TestCaaRecord {
  flags?: number;
  tag: string;
  value: string;
}

export interface TestDnsServer {
  readonly port: number;
  /** "127.0.0.1:port", as parseResolvers reads it. */
  readonly address: string;
  /** Every query received, in order. */
  readonly queries: readonly LoggedQuery[];
  /** Each inner array is one record's character-strings (at most 255 bytes each). */
  setTxt(name: string, records: (string | Buffer)[][]): void;
  setCaa(name: string, records: TestCaaRecord[]): void;
  /** A and AAAA records: each address under the type its form says. */
  setAddresses(name: string, addresses: string[]): void;
  /** Answers queries for `name` with a CNAME to `target`, plus target's records of the asked type. */
  setCname(name: string, target: string): void;
  setServfail(name: string, type?: string): void;
  setRefused(name: string, type?: string): void;
  setNxdomain(name: string): void;
  /** Drops queries, so the client times out. */
  setNoAnswer(name: string, type?: string): void;
  setDelay(name: string, ms: number): void;
  /** UDP answers carry TC=1 and no records; TCP gets the full answer. */
  setTruncate(name: string): void;
  setAuthenticated(name: string, authenticated: boolean): void;
  setExtendedError(name: string, infoCode: number, extraText: string): void;
  /** The TTL of the name's records (default 60 s). */
  setTtl(name: string, seconds: number): void;
  /** Negative answers for the name (NXDOMAIN, or NOERROR without data) carry this SOA in the authority section (RFC 2308). */
  setSoa(name: string, soa: { ttl: number; minimum: number }): void;
  /** Answers carry these bytes after the end of the message, as a broken or hostile server may send them (over `only` one transport, else both). */
  setTrailingBytes(name: string, bytes: Buffer | string, only?: 'udp' | 'tcp'): void;
  reset(): void;
  close(): Promise<void>;
}

const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

/** Applies to every type when `types` is null. */
interface TypedSwitch {
  types: Set<string> | null;
}

interface NameConfig {
  txt?: Buffer[][];
  caa?: TestCaaRecord[];
  addresses?: string[];
  cname?: string;
  servfail?: TypedSwitch;
  refused?: TypedSwitch;
  noAnswer?: TypedSwitch;
  nxdomain?: boolean;
  delayMs?: number;
  truncate?: boolean;
  authenticated?: boolean;
  extendedError?: { infoCode: number; extraText: string };
  ttl?: number;
  soa?: { ttl: number; minimum: number };
  trailing?: Buffer;
  trailingOnly?: 'udp' | 'tcp';
}

export async function startTestDnsServer(): Promise<TestDnsServer> {
  const config = new Map<string, NameConfig>();
  const queries: LoggedQuery[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const connections = new Set<net.Socket>();
  let closed = false;

  const entry = (name: string): NameConfig => {
    const key = normalize(name);
    let found = config.get(key);
    if (found === undefined) config.set(key, (found = {}));
    return found;
  };
  const matches = (sw: TypedSwitch | undefined, type: string): boolean =>
    sw !== undefined && (sw.types === null || sw.types.has(type.toUpperCase()));
  const typed = (sw: TypedSwitch | undefined, type: string | undefined): TypedSwitch => {
    if (type === undefined) return { types: null };
    const types = sw?.types ?? new Set<string>();
    types.add(type.toUpperCase());
    return { types };
  };

  /** The answer for one query, or undefined to drop it. */
  function respond(query: DecodedPacket, transport: Transport): Buffer | undefined {
    const question = query.questions?.[0];
    if (question === undefined) return undefined;
    const opt = query.additionals?.find((a): a is OptAnswer => a.type === 'OPT');
    queries.push({
      name: question.name,
      type: question.type,
      transport,
      id: query.id ?? 0,
      authenticatedData: query.flag_ad,
      udpPayloadSize: opt?.udpPayloadSize,
    });
    const cfg = config.get(normalize(question.name)) ?? {};
    if (matches(cfg.noAnswer, question.type)) return undefined;

    let rcode: number = RCODE.NOERROR;
    const answers: Answer[] = [];
    if (matches(cfg.servfail, question.type)) rcode = RCODE.SERVFAIL;
    else if (matches(cfg.refused, question.type)) rcode = RCODE.REFUSED;
    else if (cfg.nxdomain) rcode = RCODE.NXDOMAIN;
    else {
      let owner = question.name;
      let data = cfg;
      if (cfg.cname !== undefined) {
        answers.push({ type: 'CNAME', name: owner, ttl: cfg.ttl ?? 60, data: cfg.cname });
        owner = cfg.cname;
        data = config.get(normalize(cfg.cname)) ?? {};
      }
      answers.push(...recordsOf(data, owner, question.type));
    }

    const flags =
      ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) |
      dnsPacket.RECURSION_AVAILABLE |
      (cfg.authenticated ? dnsPacket.AUTHENTIC_DATA : 0) |
      rcode;
    // EDNS options only go back to a query that used EDNS (RFC 6891 §7).
    const additionals: Answer[] = [];
    if (opt !== undefined) {
      const options = cfg.extendedError ? [extendedErrorOption(cfg.extendedError)] : [];
      additionals.push({ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options });
    }
    // RFC 2308 §3: a negative answer carries the zone's SOA, whose TTL and MINIMUM bound its caching.
    const authorities: Answer[] = [];
    if (cfg.soa && answers.length === 0 && (rcode === RCODE.NOERROR || rcode === RCODE.NXDOMAIN)) {
      const { ttl, minimum } = cfg.soa;
      authorities.push({ type: 'SOA', name: question.name, ttl, data: { mname: 'ns.example.net', rname: 'hostmaster.example.net', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum } });
    }
    const response: Packet = { type: 'response', id: query.id ?? 0, flags, questions: [question], answers, authorities, additionals };
    const full = dnsPacket.encode(response);
    const trailing = (message: Buffer) => (cfg.trailing && (cfg.trailingOnly ?? transport) === transport ? Buffer.concat([message, cfg.trailing]) : message);
    // Over UDP an answer bigger than the client offered (512 bytes without
    // EDNS) is truncated, as a real server does; setTruncate forces it.
    const limit = opt === undefined ? 512 : Math.max(512, opt.udpPayloadSize);
    if (transport === 'udp' && (cfg.truncate || full.length > limit)) {
      return trailing(dnsPacket.encode({ ...response, flags: flags | dnsPacket.TRUNCATED_RESPONSE, answers: [] }));
    }
    return trailing(full);
  }

  /** Runs `send` after the name's delay; nothing is sent once the server is closed. */
  function later(name: string, send: () => void): void {
    const delay = config.get(normalize(name))?.delayMs ?? 0;
    if (delay <= 0) return send();
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!closed) send();
    }, delay);
    timers.add(timer);
  }

  const { udp, tcp, port } = await bindSharedPort((socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => socket.destroy());
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const frame = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + frame.length);
        const query = decodeQuery(frame);
        if (query === undefined) continue;
        const answer = respond(query, 'tcp');
        if (answer === undefined) continue;
        later(query.questions?.[0]?.name ?? '', () => {
          if (socket.destroyed) return;
          const length = Buffer.alloc(2);
          length.writeUInt16BE(answer.length, 0);
          socket.write(Buffer.concat([length, answer]));
        });
      }
    });
  });

  udp.on('message', (datagram, remote) => {
    const query = decodeQuery(datagram);
    if (query === undefined) return;
    const answer = respond(query, 'udp');
    if (answer === undefined) return;
    later(query.questions?.[0]?.name ?? '', () => udp.send(answer, remote.port, remote.address));
  });

  return {
    port,
    address: `127.0.0.1:${port}`,
    get queries() {
      return queries;
    },
    setTxt(name, records) {
      entry(name).txt = records.map((strings) =>
        strings.map((s) => {
          const bytes = typeof s === 'string' ? Buffer.from(s) : Buffer.from(s);
          if (bytes.length > 255) throw new RangeError(`a TXT character-string holds at most 255 bytes, got ${bytes.length}`);
          return bytes;
        }),
      );
    },
    setCaa(name, records) {
      entry(name).caa = records.map((r) => ({ ...r }));
    },
    setAddresses(name, addresses) {
      entry(name).addresses = [...addresses];
    },
    setCname(name, target) {
      entry(name).cname = target;
    },
    setServfail(name, type) {
      const e = entry(name);
      e.servfail = typed(e.servfail, type);
    },
    setRefused(name, type) {
      const e = entry(name);
      e.refused = typed(e.refused, type);
    },
    setNxdomain(name) {
      entry(name).nxdomain = true;
    },
    setNoAnswer(name, type) {
      const e = entry(name);
      e.noAnswer = typed(e.noAnswer, type);
    },
    setDelay(name, ms) {
      entry(name).delayMs = ms;
    },
    setTruncate(name) {
      entry(name).truncate = true;
    },
    setAuthenticated(name, authenticated) {
      entry(name).authenticated = authenticated;
    },
    setExtendedError(name, infoCode, extraText) {
      entry(name).extendedError = { infoCode, extraText };
    },
    setTtl(name, seconds) {
      entry(name).ttl = seconds;
    },
    setSoa(name, soa) {
      entry(name).soa = { ...soa };
    },
    setTrailingBytes(name, bytes, only) {
      const e = entry(name);
      e.trailing = Buffer.from(bytes);
      if (only) e.trailingOnly = only;
      else delete e.trailingOnly;
    },
    reset() {
      config.clear();
      queries.length = 0;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of connections) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}

function recordsOf(cfg: NameConfig, owner: string, type: string): Answer[] {
  if (type === 'TXT') {
    // dns-packet converts strings in place, so it gets copies.
    return (cfg.txt ?? []).map((strings) => ({ type: 'TXT', name: owner, ttl: cfg.ttl ?? 60, data: [...strings] }));
  }
  if (type === 'CAA') {
    return (cfg.caa ?? []).map((r) => ({
      type: 'CAA',
      name: owner,
      ttl: cfg.ttl ?? 60,
      // dns-packet's types only list issue/issuewild/iodef; any tag encodes.
      data: { flags: r.flags ?? 0, tag: r.tag, value: r.value } as CaaData,
    }));
  }
  if (type === 'A' || type === 'AAAA') {
    return (cfg.addresses ?? []).filter((a) => net.isIP(a) === (type === 'A' ? 4 : 6)).map((data) => ({ type, name: owner, ttl: cfg.ttl ?? 60, data }));
  }
  return [];
}

function extendedErrorOption(ede: { infoCode: number; extraText: string }): PacketOpt {
  const text = Buffer.from(ede.extraText);
  const data = Buffer.alloc(2 + text.length);
  data.writeUInt16BE(ede.infoCode, 0);
  text.copy(data, 2);
  // Option 15 (RFC 8914) is not in dns-packet's types; with `data` set it is written as given.
  return { code: 15, data } as unknown as PacketOpt;
}

function decodeQuery(bytes: Buffer): DecodedPacket | undefined {
  try {
    const packet = dnsPacket.decode(bytes);
    return packet.type === 'query' ? packet : undefined;
  } catch {
    return undefined;
  }
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** Binds UDP on an OS-chosen port, then TCP on the same port; tries again if TCP finds it taken. */
async function bindSharedPort(onConnection: (socket: net.Socket) => void): Promise<{ udp: dgram.Socket; tcp: net.Server; port: number }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const port = udp.address().port;
    const tcp = net.createServer(onConnection);
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, '127.0.0.1', () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      return { udp, tcp, port };
    } catch (error) {
      lastError = error;
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
    }
  }
  throw new Error(`test DNS server could not bind UDP and TCP on one port: ${String(lastError)}`);
}
