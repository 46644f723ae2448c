/**
 * ResendDCVEmail before its use case is built: every call that passes the
 * checks of CONTRACT §1 steps 1-7 answers -14, as the foundation issue asks.
 */
import type { UseCases } from './types.ts';

export const pendingUseCases: Pick<UseCases, 'resendDcvEmail'> = {
  async resendDcvEmail(ctx) {
    ctx.log.warn('ResendDCVEmail is not implemented yet');
    return { ok: false, error: { code: -14 } };
  },
};
