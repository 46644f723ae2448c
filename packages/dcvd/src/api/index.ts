/** The endpoints' use cases, wired from the services they need. */
import type { UseCases } from './types.ts';
import { getDcvEmailAddressList, type GetListDeps } from './get-dcv-email-address-list.ts';
import { resendDcvEmail, type ResendDeps } from './resend-dcv-email.ts';
import type { OutboxFlow } from '../outbox/flow.ts';
import { autoApplyOrder, autoUpdateDcv, getMdcDomainDetails, type OrderFlowDeps } from './order-flow.ts';

export interface UseCaseDeps {
  getList: GetListDeps;
  resend: ResendDeps;
  /** AutoApplyOrder / AutoApplySSL, AutoUpdateDCV, GetMDCDomainDetails; without it they answer -14. */
  flow?: OrderFlowDeps;
  /** The outbox's flow control: the calls that may queue DCV emails wait in it first while delivery is behind. */
  outboxFlow?: Pick<OutboxFlow, 'admit'>;
}

/** A use case that may queue DCV emails, behind the outbox's flow control (before it reads the time or anything else). */
function afterAdmission<A extends unknown[], R>(flow: UseCaseDeps['outboxFlow'], run: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  if (!flow) return run;
  return async (...args) => {
    await flow.admit();
    return run(...args);
  };
}

export function createUseCases(deps: UseCaseDeps): UseCases {
  return {
    getDcvEmailAddressList: (ctx, params) => getDcvEmailAddressList(deps.getList, ctx, params),
    resendDcvEmail: afterAdmission(deps.outboxFlow, (ctx, params) => resendDcvEmail(deps.resend, ctx, params)),
    ...(deps.flow
      ? {
          autoApplyOrder: afterAdmission(deps.outboxFlow, (ctx, params) => autoApplyOrder(deps.flow!, ctx, params)),
          autoUpdateDcv: afterAdmission(deps.outboxFlow, (ctx, params) => autoUpdateDcv(deps.flow!, ctx, params)),
          getMdcDomainDetails: (ctx, params) => getMdcDomainDetails(deps.flow!, ctx, params),
        }
      : {}),
  };
}
