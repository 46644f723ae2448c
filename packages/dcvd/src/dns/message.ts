// DNS messages on the wire: the query we send and a strict reader for answers.
//
// Queries are encoded with dns-packet. Answers are read by the small parser
// below instead of dns-packet's decoder, because that decoder does not bound
// its reads by RDATA length or buffer end (a TXT or CAA record can run into
// the next record and still come out as a plausible value). What we read here
// ends up as DCV evidence (CONTRACT §3, §6), so a message that does not parse
// exactly is rejected as malformed.
import dnsPacket from 'dns-packet';

export type QueryType = 'TXT' | 'CAA';

export const TYPE_CODE = { CNAME: 5, SOA: 6, TXT: 16, OPT: 41, CAA: 257 } as const;
export const CLASS_IN = 1;
const OPTION_EDE = 15; // RFC 8914

/** EDNS0 UDP payload size: the DNS Flag Day 2020 value, small enough to avoid IP fragmentation. */
export const UDP_PAYLOAD_SIZE = 1232;

export class MalformedMessage extends Error {}

export interface ExtendedDnsError {
  /** RFC 8914 INFO-CODE, e.g. 6 = DNSSEC Bogus, 18 = Prohibited. */
  infoCode: number;
  extraText: string;
}

export interface WireRecord {
  /** Owner name as a comparison key (see nameKey). */
  owner: string;
  type: number;
  klass: number;
  ttl: number;
  /** Offset of RDATA in the message, needed for names compressed against earlier data. */
  rdataOffset: number;
  rdataLength: number;
}

export interface WireMessage {
  buffer: Buffer;
  id: number;
  isResponse: boolean;
  opcode: number;
  truncated: boolean;
  authenticatedData: boolean;
  /** Full RCODE: the header's 4 bits plus the upper 8 bits from OPT (RFC 6891 §6.1.3). */
  rcode: number;
  questions: { name: string; type: number; klass: number }[];
  answers: WireRecord[];
  /** The authority section: an SOA here gives a negative answer's TTL (RFC 2308 §5). */
  authorities: WireRecord[];
  extendedErrors: ExtendedDnsError[];
}

/** Throws TypeError for a name that cannot be put in a question (callers pass normalized A-labels, CONTRACT §2). */
export function checkQueryName(name: string): void {
  if (name === '' || name === '.') throw new TypeError('DNS query name is empty');
  let wireLength = 1;
  for (const label of name.split('.')) {
    const bytes = Buffer.byteLength(label);
    if (bytes === 0) throw new TypeError(`DNS query name "${name}" has an empty label`);
    if (bytes > 63) throw new TypeError(`DNS query name "${name}" has a label longer than 63 bytes`);
    wireLength += bytes + 1;
  }
  if (wireLength > 255) throw new TypeError(`DNS query name "${name}" is longer than 255 bytes on the wire`);
}

/**
 * A recursive query with RD, and AD set so that the resolver reports whether
 * it validated the answer (RFC 6840 §5.7); EDNS0 without DO, so no DNSSEC
 * records are sent back (CONTRACT §3 keeps only the AD bit).
 */
export function encodeQuery(id: number, name: string, type: QueryType): Buffer {
  checkQueryName(name);
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.AUTHENTIC_DATA,
    questions: [{ type, name, class: 'IN' }],
    additionals: [
      { type: 'OPT', name: '.', udpPayloadSize: UDP_PAYLOAD_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] },
    ],
  });
}

/**
 * Comparison key of a name: labels lower-cased in ASCII only (DNS case
 * folding, RFC 4343) and joined by dots, with dots, backslashes and
 * non-printable bytes inside a label escaped as \DDD so that different label
 * sequences never share a key.
 */
export function nameKey(labels: readonly Buffer[]): string {
  if (labels.length === 0) return '.';
  return labels
    .map((label) => {
      let text = '';
      for (const byte of label) {
        const lower = byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte;
        text += lower > 0x20 && lower < 0x7f && lower !== 0x2e && lower !== 0x5c
          ? String.fromCharCode(lower)
          : `\\${String(lower).padStart(3, '0')}`;
      }
      return text;
    })
    .join('.');
}

/** Key of a name given as text (as the caller passed it to the client). */
export function textNameKey(name: string): string {
  return nameKey(name.split('.').map((label) => Buffer.from(label)));
}

/** Reads the message id, or undefined if the datagram is too short to be DNS. */
export function peekId(buffer: Buffer): number | undefined {
  return buffer.length >= 12 ? buffer.readUInt16BE(0) : undefined;
}

/** Parses a whole message; throws MalformedMessage on anything out of bounds or inconsistent. */
export function parseMessage(buffer: Buffer): WireMessage {
  if (buffer.length < 12) throw new MalformedMessage('message shorter than its 12-byte header');
  const flags = buffer.readUInt16BE(2);
  const counts = [4, 6, 8, 10].map((at) => buffer.readUInt16BE(at)) as [number, number, number, number];
  let offset = 12;

  const questions: WireMessage['questions'] = [];
  for (let i = 0; i < counts[0]; i++) {
    const name = readName(buffer, offset);
    need(buffer, name.next, 4, 'question');
    questions.push({ name: nameKey(name.labels), type: buffer.readUInt16BE(name.next), klass: buffer.readUInt16BE(name.next + 2) });
    offset = name.next + 4;
  }
  const sections: WireRecord[][] = [];
  for (const count of counts.slice(1)) {
    const records: WireRecord[] = [];
    for (let i = 0; i < count; i++) {
      const record = readRecord(buffer, offset);
      records.push(record);
      offset = record.rdataOffset + record.rdataLength;
    }
    sections.push(records);
  }
  // Bytes after the last record: the message does not parse exactly (the counts and the length disagree), so it
  // is malformed like any other (until 2026-12-04 they were ignored; found by fuzzing). A UDP datagram and a TCP
  // frame each hold exactly one message, so no honest server sends them.
  if (offset !== buffer.length) throw new MalformedMessage(`${buffer.length - offset} bytes after the end of the message`);

  const opts = sections[2]!.filter((record) => record.type === TYPE_CODE.OPT);
  if (opts.length > 1) throw new MalformedMessage('more than one OPT record (RFC 6891 §6.1.1)');
  let rcode = flags & 0xf;
  const extendedErrors: ExtendedDnsError[] = [];
  const opt = opts[0];
  if (opt !== undefined) {
    if (opt.owner !== '.') throw new MalformedMessage('OPT record not owned by the root');
    rcode |= (opt.ttl >>> 24) << 4;
    extendedErrors.push(...readExtendedErrors(buffer, opt));
  }

  return {
    buffer,
    id: buffer.readUInt16BE(0),
    isResponse: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    truncated: (flags & 0x0200) !== 0,
    authenticatedData: (flags & 0x0020) !== 0,
    rcode,
    questions,
    answers: sections[0]!,
    authorities: sections[1]!,
    extendedErrors,
  };
}

/** TXT RDATA: the record's character-strings, in order (RFC 1035 §3.3.14). */
export function readTxt(message: WireMessage, record: WireRecord): Buffer[] {
  const strings: Buffer[] = [];
  const end = record.rdataOffset + record.rdataLength;
  let offset = record.rdataOffset;
  while (offset < end) {
    const length = message.buffer[offset]!;
    if (offset + 1 + length > end) throw new MalformedMessage('TXT character-string runs past its RDATA');
    strings.push(message.buffer.subarray(offset + 1, offset + 1 + length));
    offset += 1 + length;
  }
  return strings;
}

/** CAA RDATA (RFC 8659 §4.1): flags, tag length, tag, value to the end of RDATA. */
export function readCaa(message: WireMessage, record: WireRecord): { flags: number; tag: string; value: Buffer } {
  const { buffer } = message;
  const start = record.rdataOffset;
  if (record.rdataLength < 2) throw new MalformedMessage('CAA RDATA shorter than 2 bytes');
  const tagLength = buffer[start + 1]!;
  if (tagLength === 0) throw new MalformedMessage('CAA tag is empty');
  if (2 + tagLength > record.rdataLength) throw new MalformedMessage('CAA tag runs past its RDATA');
  return {
    flags: buffer[start]!,
    tag: buffer.toString('latin1', start + 2, start + 2 + tagLength),
    value: buffer.subarray(start + 2 + tagLength, start + record.rdataLength),
  };
}

/** CNAME RDATA: the target name's key; the name must fill the RDATA exactly. */
export function readCnameTarget(message: WireMessage, record: WireRecord): string {
  const name = readName(message.buffer, record.rdataOffset);
  const end = record.rdataOffset + record.rdataLength;
  // A compressed name ends at its first pointer, which must be the RDATA's last bytes.
  if (name.next !== end) throw new MalformedMessage('CNAME target does not fill its RDATA');
  return nameKey(name.labels);
}

/** SOA RDATA's MINIMUM field, the last of its five 32-bit numbers after MNAME and RNAME (RFC 1035 §3.3.13). */
export function readSoaMinimum(message: WireMessage, record: WireRecord): number {
  const end = record.rdataOffset + record.rdataLength;
  const mname = readName(message.buffer, record.rdataOffset);
  const rname = readName(message.buffer, mname.next);
  if (rname.next + 20 !== end) throw new MalformedMessage('SOA RDATA is not two names and five 32-bit numbers');
  return message.buffer.readUInt32BE(rname.next + 16);
}

function readExtendedErrors(buffer: Buffer, opt: WireRecord): ExtendedDnsError[] {
  const errors: ExtendedDnsError[] = [];
  const end = opt.rdataOffset + opt.rdataLength;
  let offset = opt.rdataOffset;
  while (offset < end) {
    if (offset + 4 > end) throw new MalformedMessage('EDNS option header runs past the OPT RDATA');
    const code = buffer.readUInt16BE(offset);
    const length = buffer.readUInt16BE(offset + 2);
    const data = offset + 4;
    if (data + length > end) throw new MalformedMessage('EDNS option runs past the OPT RDATA');
    // An EDE shorter than its 2-byte INFO-CODE is skipped rather than failing
    // the whole answer: the option is advisory (RFC 8914 §3).
    if (code === OPTION_EDE && length >= 2) {
      errors.push({
        infoCode: buffer.readUInt16BE(data),
        // EXTRA-TEXT is UTF-8 and should not be NUL-terminated, but some servers do.
        extraText: buffer.toString('utf8', data + 2, data + length).replace(/\0+$/, ''),
      });
    }
    offset = data + length;
  }
  return errors;
}

function readRecord(buffer: Buffer, offset: number): WireRecord {
  const name = readName(buffer, offset);
  need(buffer, name.next, 10, 'resource record header');
  const rdataLength = buffer.readUInt16BE(name.next + 8);
  const rdataOffset = name.next + 10;
  need(buffer, rdataOffset, rdataLength, 'RDATA');
  return {
    owner: nameKey(name.labels),
    type: buffer.readUInt16BE(name.next),
    klass: buffer.readUInt16BE(name.next + 2),
    ttl: buffer.readUInt32BE(name.next + 4),
    rdataOffset,
    rdataLength,
  };
}

/**
 * Reads a possibly compressed name (RFC 1035 §4.1.4). Each pointer must go
 * strictly backwards from where the current run of labels began, so a loop
 * is impossible; the total stays within 255 bytes.
 */
function readName(buffer: Buffer, start: number): { labels: Buffer[]; next: number } {
  const labels: Buffer[] = [];
  let offset = start;
  let runStart = start;
  let next = -1;
  let wireLength = 1;
  for (;;) {
    need(buffer, offset, 1, 'name');
    const length = buffer[offset]!;
    if (length === 0) {
      if (next === -1) next = offset + 1;
      return { labels, next };
    }
    const kind = length & 0xc0;
    if (kind === 0xc0) {
      need(buffer, offset, 2, 'compression pointer');
      const target = buffer.readUInt16BE(offset) & 0x3fff;
      if (target >= runStart) throw new MalformedMessage('compression pointer does not point backwards');
      if (next === -1) next = offset + 2;
      offset = runStart = target;
      continue;
    }
    if (kind !== 0) throw new MalformedMessage('unsupported label type');
    need(buffer, offset + 1, length, 'label');
    wireLength += length + 1;
    if (wireLength > 255) throw new MalformedMessage('name longer than 255 bytes');
    labels.push(buffer.subarray(offset + 1, offset + 1 + length));
    offset += 1 + length;
  }
}

function need(buffer: Buffer, offset: number, length: number, what: string): void {
  if (offset + length > buffer.length) throw new MalformedMessage(`${what} runs past the end of the message`);
}

const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED',
  6: 'YXDOMAIN', 7: 'YXRRSET', 8: 'NXRRSET', 9: 'NOTAUTH', 10: 'NOTZONE', 11: 'DSOTYPENI',
  16: 'BADVERS', 23: 'BADCOOKIE',
};

/** IANA mnemonic of an RCODE ("RCODE12" for unnamed ones). */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}
