/** An order domain's DCV methods (dcvd's names; the API's are in @dcvd/client): a leaf, so the CLI lists them without loading the order store. */
export const DCV_METHODS = ['email', 'http', 'https', 'cname'] as const;
export type DcvMethod = (typeof DCV_METHODS)[number];
