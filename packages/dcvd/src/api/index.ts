/** The endpoints' use cases, wired from the services they need. */
import type { UseCases } from './types.ts';
import { pendingUseCases } from './not-yet.ts';
import { getDcvEmailAddressList, type GetListDeps } from './get-dcv-email-address-list.ts';
import { resendDcvEmail, type ResendDeps } from './resend-dcv-email.ts';

export interface UseCaseDeps {
  getList: GetListDeps;
  resend?: ResendDeps;
}

export function createUseCases(deps: UseCaseDeps): UseCases {
  return {
    getDcvEmailAddressList: (ctx, params) => getDcvEmailAddressList(deps.getList, ctx, params),
    resendDcvEmail: deps.resend ? (ctx, params) => resendDcvEmail(deps.resend!, ctx, params) : pendingUseCases.resendDcvEmail,
  };
}
