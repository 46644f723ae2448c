// One query/answer exchange with one resolver over UDP or TCP.
//
// Both functions resolve with an Outcome and never reject, and every path
// through them closes the socket and clears the timer: a lookup that has
// finished leaves nothing behind in the event loop.
import dgram from 'node:dgram';
import net from 'node:net';
import { CLASS_IN, MalformedMessage, parseMessage, peekId, type WireMessage } from './message.ts';
import { canonicalIp, type Resolver } from './resolvers.ts';

/** What an answer must match to be ours. */
export interface Expectation {
  id: number;
  /** nameKey of the question. */
  name: string;
  type: number;
}

export type Outcome =
  | { kind: 'answer'; message: WireMessage }
  | { kind: 'timeout' }
  | { kind: 'malformed' | 'network'; detail: string; cause?: unknown };

type Verdict = Outcome | { kind: 'ignore'; detail: string };

/**
 * Decides whether a message answers our query. 'ignore' is for messages that
 * are not ours (wrong id, not a response, another question): over UDP they may
 * be stray or forged datagrams, and we keep waiting for the real answer.
 */
function judge(buffer: Buffer, expect: Expectation): Verdict {
  const id = peekId(buffer);
  if (id === undefined) return { kind: 'ignore', detail: 'message shorter than a DNS header' };
  if (id !== expect.id) return { kind: 'ignore', detail: `message id ${id} is not the query's id ${expect.id}` };
  let message: WireMessage;
  try {
    message = parseMessage(buffer);
  } catch (error) {
    // Anything the parser throws means the bytes are not a message we can
    // use; it must not escape into a socket event handler.
    const detail = error instanceof MalformedMessage ? error.message : `unreadable message: ${String(error)}`;
    return { kind: 'malformed', detail };
  }
  if (!message.isResponse) return { kind: 'ignore', detail: 'message is a query, not a response' };
  if (message.opcode !== 0) return { kind: 'ignore', detail: `response has opcode ${message.opcode}, not QUERY` };
  const [question, ...more] = message.questions;
  if (question === undefined) {
    // RFC 1035 does not require an error response to repeat the question, and
    // some servers drop it from FORMERR/NOTIMP/REFUSED answers. Such an answer
    // can only ever make the lookup fail, so accepting it cannot be abused to
    // plant records.
    if (message.rcode === 0 || message.rcode === 3) return { kind: 'ignore', detail: 'successful response without a question' };
    return { kind: 'answer', message };
  }
  if (more.length > 0) return { kind: 'ignore', detail: 'response has more than one question' };
  if (question.name !== expect.name || question.type !== expect.type || question.klass !== CLASS_IN) {
    return { kind: 'ignore', detail: 'response is for another question' };
  }
  return { kind: 'answer', message };
}

/**
 * UDP exchange on a socket of its own (the OS picks a random source port).
 * The socket is not connect()ed: an ICMP "port unreachable" from a dead
 * resolver then shows up as a timeout, which is retried on the next resolver,
 * instead of an error that would end the lookup. Datagrams from any address
 * other than the resolver's are ignored, as are ones that judge() ignores.
 */
export function udpExchange(resolver: Resolver, query: Buffer, expect: Expectation, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket(resolver.host.includes(':') ? 'udp6' : 'udp4');
    const resolverAddress = withoutZone(resolver.host);
    let done = false;
    const finish = (outcome: Outcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        socket.close();
      } catch {
        // Already closed by node after a failed bind; nothing is left open.
      }
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    // Stays attached after finish(), so a late error can never go unhandled.
    socket.on('error', (error) => finish({ kind: 'network', detail: error.message, cause: error }));
    socket.on('message', (datagram, remote) => {
      if (remote.port !== resolver.port || withoutZone(canonicalIp(remote.address) ?? '') !== resolverAddress) return;
      const verdict = judge(datagram, expect);
      if (verdict.kind !== 'ignore') finish(verdict);
    });
    try {
      socket.send(query, resolver.port, resolver.host, (error) => {
        if (error) finish({ kind: 'network', detail: error.message, cause: error });
      });
    } catch (error) {
      finish({ kind: 'network', detail: error instanceof Error ? error.message : String(error), cause: error });
    }
  });
}

/**
 * TCP exchange (RFC 7766): one connection, the query and the answer each
 * behind a 2-byte length. The connection is ours alone, so a message that is
 * not the answer to our query means the stream is broken: malformed.
 */
export function tcpExchange(resolver: Resolver, query: Buffer, expect: Expectation, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: resolver.host, port: resolver.port });
    let received = Buffer.alloc(0);
    let done = false;
    const finish = (outcome: Outcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    socket.on('error', (error) => finish({ kind: 'network', detail: error.message, cause: error }));
    socket.on('close', () => finish({ kind: 'network', detail: 'TCP connection closed before a complete answer' }));
    socket.on('connect', () => {
      const frame = Buffer.alloc(2 + query.length);
      frame.writeUInt16BE(query.length, 0);
      query.copy(frame, 2);
      socket.write(frame);
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const length = received.readUInt16BE(0);
      if (received.length < 2 + length) return;
      const verdict = judge(received.subarray(2, 2 + length), expect);
      finish(verdict.kind === 'ignore' ? { kind: 'malformed', detail: `over TCP: ${verdict.detail}` } : verdict);
    });
  });
}

function withoutZone(address: string): string {
  const zoneAt = address.indexOf('%');
  return zoneAt === -1 ? address : address.slice(0, zoneAt);
}
