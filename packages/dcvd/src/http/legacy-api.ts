/**
 * The reseller API's two endpoints on the wire (CONTRACT §1): body parsing,
 * the check order, the three response formats. The use cases behind them know
 * nothing of HTTP.
 */
import { setMaxListeners } from 'node:events';
import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  CONTENT_TYPE,
  GET_DCV_EMAIL_ADDRESS_LIST,
  RESEND_DCV_EMAIL,
  AUTO_APPLY_ORDER,
  AUTO_APPLY_SSL,
  AUTO_UPDATE_DCV,
  GET_MDC_DOMAIN_DETAILS,
  COLLECT_SSL,
  requestedCollectFormat,
  encodeMdcDomainDetails,
  encodeMdcDomainDetailsJson,
  encodeUrlencodedFields,
  encodeJson,
  encodeJsonError,
  encodeText,
  encodeTextError,
  encodeUrlencoded,
  formEntries,
  parseRequestParams,
  requestedFormat,
  ErrorCode,
  requestedOrderFormat,
  encodePlacedOrderText,
  type ApiError,
  type EndpointSpec,
  type ErrorCodeValue,
  type ParamsOf,
  type ParseOptions,
  type ParseResult,
} from '@dcvd/client';
import type { Authenticator } from '../accounts/auth.ts';
import { MAX_TXT_ADNS } from '../contacts/txt.ts';
import { MAX_CAA_CLIMB } from '../contacts/caa.ts';
import { ClientGone, type AutoApplyOrderParams, type AutoUpdateDcvParams, type CallContext, type GetDcvEmailAddressListParams, type ResendDcvEmailParams, type UseCases } from '../api/types.ts';

export interface LegacyApiOptions {
  /** True on the HTTPS listener; on the plain listener only a trusted proxy's `X-Forwarded-Proto: https` counts. */
  secure: boolean;
  bodyLimit: number;
  auth: Authenticator;
  useCases: UseCases;
  /** Product codes GetDCVEmailAddressList accepts when `product` is given (-4 for others, CONTRACT §1). */
  products: readonly number[];
  /** Text format: add `whois_email<TAB>none` after `domain_name` (CONTRACT §1, historic clients). */
  textWhoisNone: boolean;
  /** A call's work (its DNS lookups) is abandoned this long after it starts (the request timeout). */
  requestDeadlineMs: number;
}

type Entries = [string, string][];
type Format = 'urlencoded' | 'text' | 'json';

interface Rendered {
  contentType: string;
  body: string;
  /** The outcome's code, for the request log. */
  code: ErrorCodeValue;
}

/** The parameters of step 7, which every endpoint's table requires. */
interface Credentials {
  readonly loginName: string;
  readonly loginPassword: string;
}

/**
 * An endpoint on the wire: its spec, its response format and its use case, which
 * gets the parameters typed from the spec's table (`P`, by `parse`). A list of
 * bindings holds them as `Binding`: `handle` hands `run` what the same binding's
 * `parse` returned.
 */
interface Binding<P extends Credentials = Credentials> {
  spec: EndpointSpec;
  format(entries: Entries): Format;
  /** CONTRACT §1 steps 3 to 6 on the spec's table. */
  parse(entries: Entries, options: ParseOptions): ParseResult<P>;
  run(ctx: CallContext, params: P, format: Format): Promise<Rendered>;
}

/** The spec of a binding and its parser, which types the parameters from the spec's table. */
function endpoint<S extends EndpointSpec>(spec: S) {
  return { spec, parse: (entries: Entries, options: ParseOptions) => parseRequestParams(spec, entries, options) };
}

/** The parameters among `names` that the request carried: what a use case takes as its optional inputs. */
function given<P extends object, K extends keyof P>(params: P, names: readonly K[]): { [N in K]?: Exclude<P[N], undefined> } {
  const out: { [N in K]?: Exclude<P[N], undefined> } = {};
  for (const name of names) if (params[name] !== undefined) out[name] = params[name] as Exclude<P[K], undefined>;
  return out;
}

export function renderError(spec: EndpointSpec, format: Format, given: ApiError): Rendered {
  const endpoint = spec.endpoint;
  // -90's message names the endpoint ("… with 'ResendDCVEmail'."), whoever made the error: a sandbox
  // fault switch gives none (it answered the seed's `xxxx` until 2026-12-04, found by fuzzing).
  const error = given.code === ErrorCode.VoucherPermissionDenied && given.item === undefined ? { ...given, item: endpoint } : given;
  if (format === 'urlencoded') return { contentType: CONTENT_TYPE.urlencoded, body: encodeUrlencoded(endpoint, error), code: error.code };
  if (format === 'json') return { contentType: CONTENT_TYPE.json, body: encodeJsonError(endpoint, error), code: error.code };
  return { contentType: CONTENT_TYPE.text, body: encodeTextError(endpoint, error), code: error.code };
}

function bindings(options: LegacyApiOptions): Binding[] {
  const { useCases } = options;
  const getList: Binding<ParamsOf<typeof GET_DCV_EMAIL_ADDRESS_LIST>> = {
    ...endpoint(GET_DCV_EMAIL_ADDRESS_LIST),
    format: (entries) => (requestedFormat(entries) === 2 ? 'json' : 'text'),
    async run(ctx, params, format) {
      const args: GetDcvEmailAddressListParams = {
        domainName: params.domainName,
        responseFormat: params.responseFormat === 2 ? 2 : 1,
        ...given(params, ['product']),
      };
      const outcome = await useCases.getDcvEmailAddressList(ctx, args);
      if (!outcome.ok) return renderError(this.spec, format, outcome.error);
      return format === 'json'
        ? { contentType: CONTENT_TYPE.json, body: encodeJson(outcome.value), code: ErrorCode.Success }
        : { contentType: CONTENT_TYPE.text, body: encodeText(outcome.value, { whoisNone: options.textWhoisNone }), code: ErrorCode.Success };
    },
  };
  const resend: Binding<ParamsOf<typeof RESEND_DCV_EMAIL>> = {
    ...endpoint(RESEND_DCV_EMAIL),
    format: () => 'urlencoded',
    async run(ctx, params, format) {
      const args: ResendDcvEmailParams = given(params, ['orderNumber', 'baseOrderNumber', 'dcvEmailAddress', 'dcvTemplateID']);
      const outcome = await useCases.resendDcvEmail(ctx, args);
      if (!outcome.ok) return renderError(this.spec, format, outcome.error);
      return { contentType: CONTENT_TYPE.urlencoded, body: encodeUrlencoded(this.spec.endpoint), code: ErrorCode.Success };
    },
  };
  return [getList, resend, ...flowBindings(useCases)];
}

/** The rest of the email-DCV flow (CONTRACT §12): urlencoded answers, GetMDCDomainDetails also JSON. */
function flowBindings(useCases: UseCases): Binding[] {
  const placeOrder = (spec: typeof AUTO_APPLY_ORDER | typeof AUTO_APPLY_SSL): Binding<ParamsOf<typeof spec>> => ({
    ...endpoint(spec),
    // responseFormat=0: the real host's newline-delimited text, errors as GetDCVEmailAddressList's text.
    format: (entries) => (requestedOrderFormat(entries) === 0 ? 'text' : 'urlencoded'),
    async run(ctx, params, format) {
      if (!useCases.autoApplyOrder) return renderError(this.spec, format, { code: ErrorCode.UnknownError });
      const args: AutoApplyOrderParams = {
        product: params.product,
        csr: params.csr,
        ...given(params, ['days', 'years', 'domainNames', 'dcvMethod', 'dcvEmailAddress', 'dcvEmailAddresses', 'showCertificateID']),
      };
      const outcome = await useCases.autoApplyOrder(ctx, args);
      if (!outcome.ok) return renderError(this.spec, format, outcome.error);
      const o = outcome.value;
      if (format === 'text') return { contentType: CONTENT_TYPE.text, body: encodePlacedOrderText(o, o.showCertificateID), code: ErrorCode.Success };
      // certificateID always: a public client reads it whether or not it asked (showCertificateID=Y).
      const body = encodeUrlencodedFields([
        ['orderNumber', o.orderNumber],
        ['certificateID', o.certificateID],
        ['totalCost', o.totalCost],
        ['expectedDeliveryTime', o.expectedDeliveryTime],
      ]);
      return { contentType: CONTENT_TYPE.urlencoded, body, code: ErrorCode.Success };
    },
  });
  const update: Binding<ParamsOf<typeof AUTO_UPDATE_DCV>> = {
    ...endpoint(AUTO_UPDATE_DCV),
    format: () => 'urlencoded',
    async run(ctx, params, format) {
      if (!useCases.autoUpdateDcv) return renderError(this.spec, format, { code: ErrorCode.UnknownError });
      const args: AutoUpdateDcvParams = given(params, [
        'orderNumber', 'baseOrderNumber', 'dcvTemplateID', 'domainName', 'newMethod', 'newDCVEmailAddress', 'domainNames', 'newMethods', 'newDCVEmailAddresses',
      ]);
      const outcome = await useCases.autoUpdateDcv(ctx, args);
      if (!outcome.ok) return renderError(this.spec, format, outcome.error);
      const fields: [string, number][] = [['expectedDeliveryTime', 0]];
      if (outcome.value.certificateID !== null) fields.push(['certificateID', outcome.value.certificateID]);
      return { contentType: CONTENT_TYPE.urlencoded, body: encodeUrlencodedFields(fields), code: ErrorCode.Success };
    },
  };
  const details: Binding<ParamsOf<typeof GET_MDC_DOMAIN_DETAILS>> = {
    ...endpoint(GET_MDC_DOMAIN_DETAILS),
    format: (entries) => (requestedFormat(entries) === 2 ? 'json' : 'urlencoded'),
    async run(ctx, params, format) {
      if (!useCases.getMdcDomainDetails) return renderError(this.spec, format, { code: ErrorCode.UnknownError });
      const outcome = await useCases.getMdcDomainDetails(ctx, { orderNumber: params.orderNumber, showStatusDetails: params.showStatusDetails === 'Y' });
      if (!outcome.ok) return renderError(this.spec, format, outcome.error);
      return format === 'json'
        ? { contentType: CONTENT_TYPE.json, body: encodeMdcDomainDetailsJson(outcome.value), code: ErrorCode.Success }
        : { contentType: CONTENT_TYPE.urlencoded, body: encodeMdcDomainDetails(outcome.value), code: ErrorCode.Success };
    },
  };
  const collect: Binding<ParamsOf<typeof COLLECT_SSL>> = {
    ...endpoint(COLLECT_SSL),
    // The real host's default is its line-based text; responseFormat=1 urlencoded. Errors in the same form.
    format: (entries) => (requestedCollectFormat(entries) === 1 ? 'urlencoded' : 'text'),
    async run(ctx, params, format) {
      if (!useCases.collectSsl) return renderError(this.spec, format, { code: ErrorCode.UnknownError });
      const outcome = await useCases.collectSsl(ctx, given(params, ['orderNumber', 'certificateID', 'baseOrderNumber']));
      if (!outcome.ok) return renderError(this.spec, format, outcome.error);
      // Status 0, "being processed": dcvd issues no certificate, whatever queryType asked for.
      if (format === 'text') return { contentType: CONTENT_TYPE.text, body: '0\n', code: ErrorCode.Success };
      const o = outcome.value;
      const fields: [string, string | number][] = [['orderNumber', o.orderNumber]];
      if (o.certificateID !== null) fields.push(['certificateID', o.certificateID]);
      if (params.showStatusDetails === 'Y') fields.push(['dcvStatus', o.dcvStatus]);
      if (params.showFQDN === 'Y') fields.push(['fqdn', o.fqdn]);
      return { contentType: CONTENT_TYPE.urlencoded, body: encodeUrlencodedFields(fields), code: ErrorCode.Success };
    },
  };
  return [placeOrder(AUTO_APPLY_ORDER), placeOrder(AUTO_APPLY_SSL), update, details, collect];
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The API outcome, for the one log line per request. */
    apiOutcome: { endpoint: string; code: ErrorCodeValue; reason?: string } | null;
  }
  interface FastifyContextConfig {
    binding?: unknown;
  }
}

function send(reply: FastifyReply, rendered: Rendered, status = 200): FastifyReply {
  return reply.code(status).header('content-type', rendered.contentType).send(rendered.body);
}

/** Registers both endpoints on an app. Call inside its own plugin context: it replaces the body parsers. */
export async function legacyApi(app: FastifyInstance, options: LegacyApiOptions): Promise<void> {
  // No JSON or text parsing on the API: a form body carries parameters, any other body none (CONTRACT §1).
  app.removeAllContentTypeParsers();
  await app.register(formbody, { bodyLimit: options.bodyLimit, parser: (body: string) => ({ entries: formEntries(body) }) });
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: options.bodyLimit }, (_req, _body, done) => done(null, { entries: [] }));

  // Failures before the handler (a body over the limit, a broken stream) still answer in the endpoint's format.
  app.setErrorHandler(async (error: { statusCode?: number; code?: string }, request, reply) => {
    const binding = request.routeOptions.config.binding as Binding | undefined;
    // A Content-Type header fastify cannot even parse, or none where fastify wants one (QUERY), is just another non-form body: no parameters.
    if (binding && (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || error.code === 'FST_ERR_ROUTE_MISSING_CONTENT_TYPE')) return send(reply, await handle(binding, request, reply, options));
    const tooLarge = error.statusCode === 413;
    request.log.warn({ err: error, errCode: error.code }, tooLarge ? 'request body over the limit' : 'request failed before the endpoint');
    if (!binding) return reply.code(tooLarge ? 413 : 400).send();
    // §1's steps 1 and 2 still come first: a body too large for plain HTTP is -1, for a GET -17.
    const first = transportRefusal(request, options);
    const code = first?.code ?? ErrorCode.UnknownError;
    const rendered = renderError(binding.spec, binding.format([]), { code });
    request.apiOutcome = { endpoint: binding.spec.endpoint, code, reason: first?.reason ?? (tooLarge ? 'body-too-large' : 'bad-request') };
    // HTTP 200 like every answer of the protocol (CONTRACT §1, revised: clients that take any
    // other status for a transport failure never read the -14). The unread rest of the body
    // would be parsed as the next request, so the connection is closed after the answer.
    if (tooLarge) reply.header('connection', 'close');
    return send(reply, rendered);
  });

  for (const binding of bindings(options)) {
    const config = { binding };
    for (const path of endpointPaths(binding.spec)) {
      app.all(path, { config, exposeHeadRoute: false }, async (request, reply) => {
        const rendered = await handle(binding, request, reply, options);
        return send(reply, rendered);
      });
    }
  }
}

/**
 * Where an endpoint answers: `/products/!Name`, and the same under `/products/download/`, a path
 * some of the real host's documentation gives (CONTRACT §1). `%21` for `!` is rewritten by the app.
 */
export function endpointPaths(spec: EndpointSpec): string[] {
  return [spec.path, spec.path.replace(/^\/products\//, '/products/download/'), ...(spec.aliases ?? [])];
}

/**
 * The call's AbortSignal: it fires when the response is closed before it was sent (the client
 * went away) or `deadlineMs` after it was created.
 */
function requestSignal(reply: FastifyReply, deadlineMs: number): AbortSignal {
  const controller = new AbortController();
  // Each DNS lookup that waits listens on it until it ends: up to the TXT and CAA per-call caps at once,
  // plus the call's other waits (MPIC). Above node's default of 10 that is no leak, only a call's lookups.
  setMaxListeners(MAX_TXT_ADNS + MAX_CAA_CLIMB + 4, controller.signal);
  const timer = setTimeout(() => controller.abort(new Error('request deadline passed')), deadlineMs);
  timer.unref();
  reply.raw.once('close', () => {
    clearTimeout(timer);
    if (!reply.raw.writableFinished) controller.abort(new ClientGone());
  });
  return controller.signal;
}

/** §1's steps 1 and 2, before anything else: HTTPS (directly, or as a trusted proxy says), then POST. */
function transportRefusal(request: FastifyRequest, options: LegacyApiOptions): { code: ErrorCodeValue; reason: string } | undefined {
  if (!options.secure && request.protocol.toLowerCase() !== 'https') return { code: ErrorCode.NotHttps, reason: 'not-https' };
  if (request.method !== 'POST') return { code: ErrorCode.NotPost, reason: 'not-post' };
  return undefined;
}

async function handle(binding: Binding, request: FastifyRequest, reply: FastifyReply, options: LegacyApiOptions): Promise<Rendered> {
  // --products is GetDCVEmailAddressList's list (CONTRACT §1); the order endpoints check `product` against the catalogue.
  const valueRules = binding.spec.endpoint === 'GetDCVEmailAddressList' ? { allowed: { product: options.products } } : {};
  const entries = (request.body as { entries?: Entries } | undefined)?.entries ?? [];
  const format = binding.format(entries);
  const endpoint = binding.spec.endpoint;
  const fail = (error: ApiError, reason: string): Rendered => {
    request.apiOutcome = { endpoint, code: error.code, reason };
    return renderError(binding.spec, format, error);
  };
  const refused = transportRefusal(request, options);
  if (refused) return fail({ code: refused.code }, refused.reason);
  // Steps 3 to 6.
  const parsed = binding.parse(entries, valueRules);
  if (!parsed.ok) return fail(parsed.error, 'parameters');
  try {
    // Step 7: one answer for every cause.
    const auth = await options.auth.authenticate(parsed.params.loginName, parsed.params.loginPassword, request.ip);
    if (!auth.ok) return fail({ code: ErrorCode.IncorrectLogin }, auth.reason);
    let signal: AbortSignal | undefined;
    const ctx: CallContext = {
      account: auth.account,
      sourceIp: request.ip,
      requestId: request.id,
      log: request.log,
      get signal() {
        return (signal ??= requestSignal(reply, options.requestDeadlineMs));
      },
    };
    // Steps 8 to 10 belong to the use case.
    const rendered = await binding.run(ctx, parsed.params, format);
    request.apiOutcome = { endpoint, code: rendered.code };
    return rendered;
  } catch (err) {
    // No detail in the body; the log has it, under the request id the response carries.
    request.log.error({ err }, 'unexpected error');
    return fail({ code: ErrorCode.UnknownError }, 'exception');
  }
}
