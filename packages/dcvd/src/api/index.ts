/** The endpoints' use cases, wired from the services they need. */
import type { UseCases } from './types.ts';
import { pendingUseCases } from './not-yet.ts';
import { getDcvEmailAddressList, type GetListDeps } from './get-dcv-email-address-list.ts';

export interface UseCaseDeps {
  getList: GetListDeps;
}

export function createUseCases(deps: UseCaseDeps): UseCases {
  return {
    getDcvEmailAddressList: (ctx, params) => getDcvEmailAddressList(deps.getList, ctx, params),
    resendDcvEmail: pendingUseCases.resendDcvEmail,
  };
}
