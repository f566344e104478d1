export * from './metric-namespace';
