export declare const STAMP: string;
export declare function buildIsCurrent(packageDir: string): boolean;
