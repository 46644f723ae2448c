/**
 * Concurrent identical reads share one statement, and no caller gets an answer older than its own
 * call (issue 20). A read asked while the same read (same key) is running does not join it: that
 * statement may have started before something the caller must see was committed. It waits for the
 * next one, which starts when the running one ends, and which every read asked meanwhile shares. So
 * each answer comes from a statement that started after its caller asked, as if each had run its own.
 *
 * Made for the remembered-credential path of authentication on PostgreSQL (src/accounts/auth.ts):
 * a reseller drives the API with one account from one address, so its concurrent calls all read the
 * same row, and each statement is a round trip that costs both sides far more than the row itself
 * (measured alone: node 53–63 µs, the server 40–47 µs; docs/PERFORMANCE.md, seventh round). On SQLite
 * a statement runs at once, in its caller's turn (store/database.ts), so reads overlap only while another
 * call's transaction holds the connection.
 *
 * A failed statement fails the reads that shared it, not the next ones. Keys live only while a read
 * runs: the map holds at most as many entries as reads in flight. A statement that has run longer than
 * `staleAfterMs` (longer than the database lets one run: a connection that stopped answering) no longer
 * holds up its key: the next read starts a statement of its own, and the reads waiting behind the stuck
 * one take that statement's answer (it started after they asked).
 */
interface Next<T> {
  run: () => Promise<T>;
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

interface Running<T> {
  /** The reads asked while this key's statement runs, sharing the one that starts after it. */
  next: Next<T> | undefined;
  startedAt: number;
}

export interface FreshReadsOptions {
  /** A statement running this long no longer holds up its key (default: never). */
  staleAfterMs?: number;
  /** Milliseconds, monotonic (tests inject theirs). */
  now?: () => number;
}

export class FreshReads<T> {
  private readonly running = new Map<string, Running<T>>();
  private readonly staleAfterMs: number;
  private readonly now: () => number;

  constructor(options: FreshReadsOptions = {}) {
    this.staleAfterMs = options.staleAfterMs ?? Infinity;
    this.now = options.now ?? (() => performance.now());
  }

  /** Keys with a statement running now (tests). */
  get inFlight(): number {
    return this.running.size;
  }

  /** `run`'s answer for `key`, from a statement that starts after this call; concurrent calls of one key share it. */
  read(key: string, run: () => Promise<T>): Promise<T> {
    const state = this.running.get(key);
    const now = this.now();
    if (state === undefined || now - state.startedAt > this.staleAfterMs) {
      const started: Running<T> = { next: undefined, startedAt: now };
      this.running.set(key, started);
      const answer = this.start(key, started, run);
      // Those waiting behind a stuck statement take this one's answer: it started after they asked.
      const waiting = state?.next;
      if (waiting !== undefined) {
        state!.next = undefined;
        answer.then(waiting.resolve, waiting.reject);
      }
      return answer;
    }
    if (state.next === undefined) {
      let resolve!: (value: T) => void;
      let reject!: (reason: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      state.next = { run, promise, resolve, reject };
    }
    return state.next.promise;
  }

  private start(key: string, state: Running<T>, run: () => Promise<T>): Promise<T> {
    let answer: Promise<T>;
    try {
      answer = run();
    } catch (err) {
      answer = Promise.reject(err);
    }
    const ended = (): void => {
      const next = state.next;
      if (next === undefined) {
        // A stuck statement that ended late leaves its key's newer statement in place.
        if (this.running.get(key) === state) this.running.delete(key);
        return;
      }
      state.next = undefined;
      state.startedAt = this.now();
      this.start(key, state, next.run).then(next.resolve, next.reject);
    };
    answer.then(ended, ended);
    return answer;
  }
}
