/**
 * @dcvd/client — a typed client of the reseller API's DCV email endpoints
 * (GetDCVEmailAddressList, ResendDCVEmail) and the rest of the email-DCV flow
 * (AutoApplyOrder, AutoUpdateDCV, GetMDCDomainDetails, CollectSSL), and their
 * wire protocol, which the dcvd server shares. Zero runtime dependencies; needs only `fetch`.
 */
export * from './protocol/index.ts';
export * from './client.ts';
