export * from './format.ts';
export * from './split.ts';
