export * from './pcrs';
