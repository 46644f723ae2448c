/** The endpoints' use cases, wired from the services they need. */
import type { UseCases } from './types.ts';
import { pendingUseCases } from './not-yet.ts';

export function createUseCases(): UseCases {
  return {
    getDcvEmailAddressList: pendingUseCases.getDcvEmailAddressList,
    resendDcvEmail: pendingUseCases.resendDcvEmail,
  };
}
