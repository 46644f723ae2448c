/** Domain-name rules (CONTRACT §2): normalization, the base domain, the ADNs and their levels. */
export { checkDomainName, MAX_INPUT_LENGTH } from './check.ts';
export type { Adn, DomainCheck, DomainErrorCode, DomainRejectReason } from './types.ts';
