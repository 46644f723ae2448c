export * from './errors.ts';
export * from './params.ts';
export * from './formats.ts';
