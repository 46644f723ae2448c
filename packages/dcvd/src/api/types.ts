/** What the endpoints' use cases see: an authenticated call, checked parameters, no HTTP. */
import type { ApiError, DcvEmailAddressList, ErrorCodeValue, MdcDomainDetail } from '@dcvd/client';
import type { AccountRow } from '../accounts/repository.ts';
import type { FastifyBaseLogger } from 'fastify';

export interface CallContext {
  account: AccountRow;
  sourceIp: string;
  requestId: string;
  log: FastifyBaseLogger;
  /**
   * Fires when the client goes away before its answer (reason: ClientGone) or the request's
   * deadline passes; DNS lookups take it (issue 15 item 5). Created on first read, so calls that
   * never wait pay nothing.
   */
  readonly signal?: AbortSignal;
}

/** The reason of a call's signal when its client closed the connection before the answer. */
export class ClientGone extends Error {
  constructor() {
    super('the client closed the connection before the answer');
  }
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: ApiError };

/** A use case's error answer: the code, and the parameter it names where it names one. */
export const fail = <T>(code: ErrorCodeValue, item?: string): Outcome<T> => ({ ok: false, error: item === undefined ? { code } : { code, item } });

export interface GetDcvEmailAddressListParams {
  domainName: string;
  /** Absent: a TLS certificate's DCV (CONTRACT §1); present: one of the operator's product codes. */
  product?: number;
  responseFormat: 1 | 2;
}

export interface ResendDcvEmailParams {
  orderNumber?: number;
  baseOrderNumber?: number;
  dcvEmailAddress?: string;
  dcvTemplateID?: number;
}

export interface UseCases extends Partial<FlowUseCases> {
  getDcvEmailAddressList(ctx: CallContext, params: GetDcvEmailAddressListParams): Promise<Outcome<DcvEmailAddressList>>;
  resendDcvEmail(ctx: CallContext, params: ResendDcvEmailParams): Promise<Outcome<void>>;
}

// ---------------------------------------------------------------- the rest of the email-DCV flow (CONTRACT §12)

export interface AutoApplyOrderParams {
  product: number;
  /** `days`, else `years` (365 days each); the request has one of them (the parameter check's `oneOf`). */
  days?: number;
  years?: number;
  csr: string;
  domainNames?: string;
  dcvMethod?: string;
  dcvEmailAddress?: string;
  dcvEmailAddresses?: string;
  showCertificateID?: string;
}

export interface PlacedOrderResult {
  orderNumber: number;
  certificateID: number;
  totalCost: string;
  expectedDeliveryTime: number;
  showCertificateID: boolean;
}

export interface AutoUpdateDcvParams {
  orderNumber?: number;
  baseOrderNumber?: number;
  domainName?: string;
  newMethod?: string;
  newDCVEmailAddress?: string;
  dcvTemplateID?: number;
  domainNames?: string;
  newMethods?: string;
  newDCVEmailAddresses?: string;
}

export interface UpdatedDcvResult {
  certificateID: number | null;
}

export interface GetMdcDomainDetailsParams {
  orderNumber: number;
  showStatusDetails: boolean;
}

export interface CollectSslParams {
  orderNumber?: number;
  certificateID?: number;
  baseOrderNumber?: number;
}

/** CollectSSL's status of an order that is neither cancelled nor declined (those answer -20). */
export interface CollectedStatus {
  orderNumber: number;
  certificateID: number | null;
  /** The real host's numbers: 0 not started, 2 in progress, 1 completed (every domain validated). */
  dcvStatus: 0 | 1 | 2;
  /** The order's first domain (its CN). */
  fqdn: string;
}

export interface FlowUseCases {
  autoApplyOrder(ctx: CallContext, params: AutoApplyOrderParams): Promise<Outcome<PlacedOrderResult>>;
  autoUpdateDcv(ctx: CallContext, params: AutoUpdateDcvParams): Promise<Outcome<UpdatedDcvResult>>;
  getMdcDomainDetails(ctx: CallContext, params: GetMdcDomainDetailsParams): Promise<Outcome<MdcDomainDetail[]>>;
  collectSsl(ctx: CallContext, params: CollectSslParams): Promise<Outcome<CollectedStatus>>;
}
