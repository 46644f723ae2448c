/** What the endpoints' use cases see: an authenticated call, checked parameters, no HTTP. */
import type { ApiError, DcvEmailAddressList } from '@dcvd/client';
import type { AccountRow } from '../accounts/repository.ts';
import type { FastifyBaseLogger } from 'fastify';

export interface CallContext {
  account: AccountRow;
  sourceIp: string;
  requestId: string;
  log: FastifyBaseLogger;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: ApiError };

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

export interface UseCases {
  getDcvEmailAddressList(ctx: CallContext, params: GetDcvEmailAddressListParams): Promise<Outcome<DcvEmailAddressList>>;
  resendDcvEmail(ctx: CallContext, params: ResendDcvEmailParams): Promise<Outcome<void>>;
}
