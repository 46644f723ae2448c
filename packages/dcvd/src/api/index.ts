/** The endpoints' use cases, wired from the services they need. */
import type { UseCases } from './types.ts';
import { getDcvEmailAddressList, type GetListDeps } from './get-dcv-email-address-list.ts';
import { resendDcvEmail, type ResendDeps } from './resend-dcv-email.ts';
import { autoApplyOrder, autoUpdateDcv, getMdcDomainDetails, type OrderFlowDeps } from './order-flow.ts';

export interface UseCaseDeps {
  getList: GetListDeps;
  resend: ResendDeps;
  /** AutoApplyOrder / AutoApplySSL, AutoUpdateDCV, GetMDCDomainDetails; without it they answer -14. */
  flow?: OrderFlowDeps;
}

export function createUseCases(deps: UseCaseDeps): UseCases {
  return {
    getDcvEmailAddressList: (ctx, params) => getDcvEmailAddressList(deps.getList, ctx, params),
    resendDcvEmail: (ctx, params) => resendDcvEmail(deps.resend, ctx, params),
    ...(deps.flow
      ? {
          autoApplyOrder: (ctx, params) => autoApplyOrder(deps.flow!, ctx, params),
          autoUpdateDcv: (ctx, params) => autoUpdateDcv(deps.flow!, ctx, params),
          getMdcDomainDetails: (ctx, params) => getMdcDomainDetails(deps.flow!, ctx, params),
        }
      : {}),
  };
}
