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
 * (measured: node 53–63 µs, the server 40–47 µs). On SQLite a statement runs at once, in its
 * caller's turn (store/database.ts): nothing overlaps, and every read runs its own.
 *
 * A failed statement fails the reads that shared it, not the next ones. Keys live only while a read
 * runs: the map holds at most as many entries as reads in flight.
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
}

export class FreshReads<T> {
  private readonly running = new Map<string, Running<T>>();

  /** Keys with a statement running now (tests). */
  get inFlight(): number {
    return this.running.size;
  }

  /** `run`'s answer for `key`, from a statement that starts after this call; concurrent calls of one key share it. */
  read(key: string, run: () => Promise<T>): Promise<T> {
    const state = this.running.get(key);
    if (state === undefined) {
      const started: Running<T> = { next: undefined };
      this.running.set(key, started);
      return this.start(key, started, run);
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
        this.running.delete(key);
        return;
      }
      state.next = undefined;
      this.start(key, state, next.run).then(next.resolve, next.reject);
    };
    answer.then(ended, ended);
    return answer;
  }
}
