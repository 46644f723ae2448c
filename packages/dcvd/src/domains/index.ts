/** Domain-name rules and constructed contact addresses (CONTRACT §2). */
export { checkDomainName, MAX_INPUT_LENGTH } from './check.ts';
export { constructedAddresses, CONSTRUCTED_LOCAL_PARTS } from './addresses.ts';
export type { ConstructedAddress } from './addresses.ts';
export type { Adn, DomainCheck, DomainErrorCode, DomainRejectReason } from './types.ts';
