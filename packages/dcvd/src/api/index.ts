/** The endpoints' use cases, wired from the services they need. */
import { ErrorCode } from '@dcvd/client';
import { ClientGone, fail, type CallContext, type Outcome, type UseCases } from './types.ts';
import { getDcvEmailAddressList, type GetListDeps } from './get-dcv-email-address-list.ts';
import { resendDcvEmail, type ResendDeps } from './resend-dcv-email.ts';
import type { OutboxFlow } from '../outbox/flow.ts';
import { autoApplyOrder, autoUpdateDcv, collectSsl, getMdcDomainDetails, type OrderFlowDeps } from './order-flow.ts';

export interface UseCaseDeps {
  getList: GetListDeps;
  resend: ResendDeps;
  /** AutoApplyOrder / AutoApplySSL, AutoUpdateDCV, GetMDCDomainDetails; without it they answer -14. */
  flow?: OrderFlowDeps;
  /** The outbox's flow control: the calls that may queue DCV emails wait in it first while delivery is behind. */
  outboxFlow?: Pick<OutboxFlow, 'admit' | 'enabled'>;
}

/**
 * A use case that may queue DCV emails, behind the outbox's flow control (before it reads the time or
 * anything else). A call whose client went away while it waited queues nothing.
 */
function afterAdmission<P, R>(flow: UseCaseDeps['outboxFlow'], run: (ctx: CallContext, params: P) => Promise<Outcome<R>>): (ctx: CallContext, params: P) => Promise<Outcome<R>> {
  // Off (--outbox-max-lag 0): the use case itself, no wrapper on the hot path.
  if (!flow?.enabled) return run;
  return async (ctx, params) => {
    const waited = await flow.admit(() => ctx.signal);
    if (waited === 'aborted' && ctx.signal?.reason instanceof ClientGone) {
      ctx.log.info('the client went away while its call waited for DCV email delivery to catch up: nothing queued');
      return fail(ErrorCode.RequestUnsuccessful);
    }
    return run(ctx, params);
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
          collectSsl: (ctx, params) => collectSsl(deps.flow!, ctx, params),
        }
      : {}),
  };
}
