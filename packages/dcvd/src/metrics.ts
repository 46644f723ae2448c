/**
 * Prometheus metrics for operators (issue 8), with prom-client on a registry
 * of this server's own (several servers in one process never mix). Served as
 * `GET /metrics` on the admin listener. docs/OPERATIONS.md explains each one.
 */
import type { WebhookOutcome } from './webhooks/webhooks.ts';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Kysely } from 'kysely';
import type { Database } from './store/schema.ts';
import type { Clock } from './deps.ts';
import { outboxStateCounts, type OutboxStateCounts } from './outbox/state-counts.ts';

export interface Metrics {
  registry: Registry;
  /** One API call: its endpoint, outcome code and latency; the -16 cause when there is one. */
  observeRequest(endpoint: string, code: number, seconds: number, authFailure?: string): void;
  /** One DNS lookup of a contact source, by type and outcome (ok, timeout, servfail, …). */
  dnsLookup(type: string, outcome: string): void;
  /** A contact lookup through the DNS cache: hit, miss, or coalesced (joined an identical query in flight). */
  dnsCache(outcome: string): void;
  /** An account locked by the lockout rule. */
  lockout(): void;
  /** One argon2 verification: against an account's hash, or the dummy one of an unknown or locked login. */
  passwordVerification(kind: 'account' | 'dummy'): void;
  /** A DNS transport event: overloaded (global cap), stray datagram, socket error (issue 14). */
  dnsTransport(event: string): void;
  /** A timer or background task that failed and carried on (EMFILE, …), by task. */
  backgroundError(task: string): void;
  /** One selection of a DNS-found contact address, by MPIC outcome (issue 19). */
  mpicCorroboration(outcome: string): void;
  /** A call that waited in the outbox's flow control: why it went on (caught-up, timed-out) and how long it waited. */
  outboxFlowWait(outcome: string, seconds: number): void;
  /** One webhook attempt's outcome (src/webhooks/webhooks.ts): delivered, retry, failed, refused (an account URL's target), no-secret. */
  webhookAttempt(outcome: WebhookOutcome): void;
  /** The Prometheus text exposition. */
  render(): Promise<string>;
  contentType: string;
}

export interface MetricSources {
  /** The clock the queue's rows are dated by (the sandbox's in the sandbox), for their age. */
  clock: Clock;
  /** Whole days until the email DCV cut-off (0 once it passed). */
  emailDcvDaysLeft?: () => number;
  /** The DNSSEC policy's mode and each resolver's probe state. */
  dnssec?: () => { mode: string; resolvers: ReadonlyMap<string, { state: string }> };
  /**
   * The metrics of this server's API processes (`--processes`, src/cluster.ts), each as its registry's
   * getMetricsAsJSON(): render() then sums their counters and histograms with this process's. Gauges
   * read from the database or the configuration are the same in every process and taken once.
   */
  peers?: () => Promise<object[]>;
}

/** The webhook events waiting, by state (`dcvd_webhooks_waiting`; exported for test/webhook-index-plan.test.ts). */
export const webhooksWaitingQuery = (db: Kysely<Database>) =>
  db.selectFrom('webhook_outbox').select(['state', (eb) => eb.fn.countAll<number | string>().as('n')]).where('state', 'in', ['pending', 'sending']).groupBy('state');

/** When the oldest waiting webhook event was queued (`dcvd_webhooks_oldest_pending_seconds`; exported for the same test). */
export const oldestWaitingWebhookQuery = (db: Kysely<Database>) =>
  db.selectFrom('webhook_outbox').select((eb) => eb.fn.min('created_at').as('oldest')).where('state', 'in', ['pending', 'sending']);

export function createMetrics(db: Kysely<Database>, sources: MetricSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'dcvd_' });
  const dnssec = sources.dnssec;
  if (dnssec) {
    new Gauge({
      name: 'dcvd_dnssec_mode',
      aggregator: 'first',
      help: 'The DNSSEC policy of contact lookups: 1 for the mode in force (require, log, off); only require is BR 3.2.2.4 compliant.',
      labelNames: ['mode'] as const,
      registers: [registry],
      collect() {
        const { mode } = dnssec();
        for (const m of ['require', 'log', 'off']) this.set({ mode: m }, m === mode ? 1 : 0);
      },
    });
    new Gauge({
      name: 'dcvd_dnssec_resolvers',
      aggregator: 'first',
      help: 'Configured DNS resolvers by DNSSEC probe state (proven, failed, unprobed); under --dnssec require only proven ones are asked.',
      labelNames: ['state'] as const,
      registers: [registry],
      collect() {
        const counts: Record<string, number> = { proven: 0, failed: 0, unprobed: 0 };
        for (const s of dnssec().resolvers.values()) counts[s.state] = (counts[s.state] ?? 0) + 1;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
  }
  const daysLeft = sources.emailDcvDaysLeft;
  if (daysLeft) {
    new Gauge({
      name: 'dcvd_email_dcv_days_left',
      aggregator: 'first',
      help: 'Days until the email DCV cut-off (--email-dcv-cutoff; BR 3.2.2.4.4, .13, .14 MUST NOT be relied upon from 2028-03-15); 0 once it passed.',
      registers: [registry],
      collect() {
        this.set(daysLeft());
      },
    });
  }
  const requests = new Counter({
    name: 'dcvd_api_requests_total',
    help: 'API calls by endpoint and outcome code (0 = success).',
    labelNames: ['endpoint', 'code'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'dcvd_api_request_duration_seconds',
    help: 'API call latency by endpoint, from the request to the response being sent.',
    labelNames: ['endpoint'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const authFailures = new Counter({
    name: 'dcvd_auth_failures_total',
    help: 'Calls answered -16, by cause (unknown-login, wrong-password, locked, password-expired, source-not-allowed, ip-blocked, busy, changed).',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const lockouts = new Counter({
    name: 'dcvd_lockouts_total',
    help: 'Accounts locked by the lockout rule (consecutive failures).',
    registers: [registry],
  });
  const verifications = new Counter({
    name: 'dcvd_password_verifications_total',
    help: 'argon2 verifications: kind="account" against an account\u2019s hash, kind="dummy" for unknown or locked logins (same cost).',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  const dns = new Counter({
    name: 'dcvd_dns_lookups_total',
    help: 'DNS lookups for contact addresses, by record type and outcome (ok, timeout, servfail, dnssec-bogus, refused, rcode, malformed, network, overloaded, aborted, name-too-long, not-queried, no-validating-resolver).',
    labelNames: ['type', 'outcome'] as const,
    registers: [registry],
  });
  const dnsCache = new Counter({
    name: 'dcvd_dns_cache_total',
    help: 'Contact lookups through the DNS answer cache (--dns-cache-max-ttl): hit, miss (a query was sent), coalesced (joined an identical query in flight).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const dnsTransport = new Counter({
    name: 'dcvd_dns_transport_events_total',
    help: 'DNS transport events: overloaded (a query found the global in-flight cap and its queue full), stray (a datagram that answers nothing in flight), socket-error (EMFILE, ENFILE, …).',
    labelNames: ['event'] as const,
    registers: [registry],
  });
  const backgroundErrors = new Counter({
    name: 'dcvd_background_errors_total',
    help: 'Timers and background tasks that failed and carried on (e.g. EMFILE in the stats timer), by task.',
    labelNames: ['task'] as const,
    registers: [registry],
  });
  const mpic = new Counter({
    name: 'dcvd_mpic_corroborations_total',
    help: 'Selections of DNS-found contact addresses by Multi-Perspective Issuance Corroboration outcome (corroborated, quorum-not-met, rir-diversity-not-met, too-few-perspectives, service-disagrees, timeout, unreachable, bad-answer, not-configured, off, unchanged-resend).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const flowWaits = new Counter({
    name: 'dcvd_outbox_flow_waits_total',
    help: 'API calls that waited before queueing DCV emails because delivery was behind (--outbox-max-lag), by how the wait ended: caught-up (delivery caught up), timed-out (--outbox-flow-delay passed), aborted (the client went away: nothing queued), unread (the delivery lag could not be read: the call went on).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const flowWaitSeconds = new Counter({
    name: 'dcvd_outbox_flow_wait_seconds_total',
    help: 'Seconds API calls spent waiting in the outbox flow control.',
    registers: [registry],
  });
  // Read from the database at scrape time, so they are right across instances and restarts; the final
  // emails counted once (src/outbox/state-counts.ts), so a scrape does not read the whole history.
  const outbox = outboxStateCounts(db);
  let reading: ReturnType<OutboxStateCounts['read']> | undefined;
  /** One read per scrape for both gauges: prom-client starts every metric's collect() at once (Promise.all), so the second joins the first's read. */
  const readOutbox = () => {
    reading ??= outbox.read().finally(() => {
      reading = undefined;
    });
    return reading;
  };
  new Gauge({
    name: 'dcvd_outbox_emails',
    aggregator: 'first',
    help: 'DCV emails in the outbox by state: pending and sending are the queue depth; delivered, failed and cancelled are outcomes.',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const { counts } = await readOutbox();
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  const pendingAge = new Gauge({
    name: 'dcvd_outbox_oldest_pending_seconds',
    aggregator: 'first',
    help: 'Age of the oldest DCV email not yet delivered (0 when none): a growing value means delivery is stuck.',
    registers: [registry],
    async collect() {
      const { oldestWaitingCreatedAt: oldest } = await readOutbox();
      pendingAge.set(oldest === undefined ? 0 : Math.max(0, (sources.clock.now() - oldest) / 1000));
    },
  });

  const webhookAttempts = new Counter({
    name: 'dcvd_webhook_attempts_total',
    help: 'Webhook POST attempts by outcome: delivered (2xx), retry (an error or a non-2xx answer, tried again), failed (for good: attempts used up, or the account has no URL of its own any more), refused (an account URL leads to an address outside the Internet or --webhook-allow-networks, or plain http:// there; also retried), no-secret (not sent: the receiver has no signing secret; waits without spending attempts).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  // The webhook queue from the database at scrape time (its state index; the queue, not the history).
  new Gauge({
    name: 'dcvd_webhooks_waiting',
    aggregator: 'first',
    help: 'Webhook events not yet delivered or failed, by state (pending, sending), in every instance.',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const rows = await webhooksWaitingQuery(db).execute();
      for (const state of ['pending', 'sending']) this.set({ state }, Number(rows.find((r) => r.state === state)?.n ?? 0));
    },
  });
  const webhookAge = new Gauge({
    name: 'dcvd_webhooks_oldest_pending_seconds',
    aggregator: 'first',
    help: 'Age of the oldest webhook event not yet delivered or failed (0 when none): a growing value means a receiver is down or refused.',
    registers: [registry],
    async collect() {
      const row = await oldestWaitingWebhookQuery(db).executeTakeFirst();
      const oldest = row?.oldest === null || row?.oldest === undefined ? undefined : Number(row.oldest);
      webhookAge.set(oldest === undefined ? 0 : Math.max(0, (sources.clock.now() - oldest) / 1000));
    },
  });

  return {
    registry,
    webhookAttempt(outcome) {
      webhookAttempts.inc({ outcome });
    },
    observeRequest(endpoint, code, seconds, authFailure) {
      requests.inc({ endpoint, code: String(code) });
      latency.observe({ endpoint }, seconds);
      if (authFailure) authFailures.inc({ reason: authFailure });
    },
    dnsLookup(type, outcome) {
      dns.inc({ type, outcome });
    },
    passwordVerification(kind) {
      verifications.inc({ kind });
    },
    lockout() {
      lockouts.inc();
    },
    dnsCache(outcome) {
      dnsCache.inc({ outcome });
    },
    dnsTransport(event) {
      dnsTransport.inc({ event });
    },
    backgroundError(task) {
      backgroundErrors.inc({ task });
    },
    mpicCorroboration(outcome) {
      mpic.inc({ outcome });
    },
    outboxFlowWait(outcome, seconds) {
      flowWaits.inc({ outcome });
      flowWaitSeconds.inc(seconds);
    },
    async render() {
      const peers = sources.peers;
      if (!peers) return registry.metrics();
      return AggregatorRegistry.aggregate([await registry.getMetricsAsJSON(), ...(await peers())]).metrics();
    },
    contentType: registry.contentType,
  };
}
