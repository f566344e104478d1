import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'assets/gpu-runtime/test/**/*.test.ts'],
    // Synthesizing CDK apps is CPU-bound; a few workers keep a 2-core CI machine responsive.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // On the build machines the vsock device belongs to the machine itself: no test, and no
    // process a test starts, may reach a vsock address through the real addon.
    env: { EGPU_VSOCK: 'off' },
  },
  resolve: {
    // jsii compiles lib/ into out/, so lib/ holds only .ts sources; prefer .ts anyway so a
    // stray compiled lib/*.js can never shadow the source under test.
    extensions: ['.ts', '.mts', '.js', '.mjs', '.json'],
  },
});
