/**
 * @dcvd/client — the wire protocol of the reseller API's DCV email endpoints
 * (GetDCVEmailAddressList, ResendDCVEmail). Zero runtime dependencies.
 */
export * from './protocol/index.ts';
