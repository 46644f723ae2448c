/**
 * The endpoints' use cases before they are built: every call that passes the
 * checks of CONTRACT §1 steps 1-7 answers -14, as the foundation issue asks.
 */
import type { UseCases } from './types.ts';

export const pendingUseCases: UseCases = {
  async getDcvEmailAddressList(ctx) {
    if (!ctx.account.perm_auto_apply) return { ok: false, error: { code: -91 } };
    ctx.log.warn('GetDCVEmailAddressList is not implemented yet');
    return { ok: false, error: { code: -14 } };
  },
  async resendDcvEmail(ctx) {
    ctx.log.warn('ResendDCVEmail is not implemented yet');
    return { ok: false, error: { code: -14 } };
  },
};
