// Builds the runtime: dist/egpu.js (one bundle with its dependencies) and, where a C
// toolchain and Node's headers are present, three native addons:
// - dist/aes_gcm.node, in-place AES-256-GCM. Without it the runtime uses node:crypto,
//   slower but the same bytes.
// - dist/vsock.node (Linux), AF_VSOCK bridged to Unix socketpairs. Without it vsock:
//   addresses are refused with VSOCK_UNAVAILABLE.
// - dist/nsm.node (Linux), the Nitro Secure Module device (/dev/nsm). Without it `egpu egp
//   --nsm-device` is refused with NSM_UNAVAILABLE; local mode (--nsm-state) works.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

console.log('[gpu-runtime] bundling src/cli.ts -> dist/egpu.js');
await esbuild.build({
  entryPoints: [join(here, 'src', 'cli.ts')],
  outfile: join(dist, 'egpu.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'inline',
  legalComments: 'none',
  logLevel: 'warning',
  // onnxruntime-node loads its native binding by a computed path, which a bundle cannot hold:
  // it stays a runtime dependency, required (lazily, by `egpu context` at its first onnx.run).
  external: ['onnxruntime-node'],
});

// Each addon is optional and built on its own: one that fails to compile leaves the other.
// With EGPU_REQUIRE_ADDONS=1 (CI) a missing one fails the build instead: the tests that need
// an addon skip without it, and CI must not pass by skipping them.
const addons = [
  { name: 'aes_gcm', what: 'the AES-256-GCM addon', fallback: 'the runtime falls back to node:crypto for AES-256-GCM' },
  { name: 'vsock', what: 'the AF_VSOCK addon', fallback: 'vsock: addresses are refused (VSOCK_UNAVAILABLE); unix: and tcp: work' },
  { name: 'nsm', what: 'the NSM device addon', fallback: 'egpu egp --nsm-device is refused (NSM_UNAVAILABLE); --nsm-state (local mode) works' },
];
if (existsSync(join(here, 'binding.gyp'))) {
  console.log(`[gpu-runtime] building ${addons.map((addon) => addon.what).join(', ')} (node-gyp)`);
  const nodeGyp = process.env.npm_config_node_gyp ?? bundledNodeGyp();
  const nodedir = existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [];
  const [cmd, args] = nodeGyp ? [process.execPath, [nodeGyp]] : ['node-gyp', []];
  // make -k: a target that fails to compile does not stop the others.
  spawnSync(cmd, [...args, 'rebuild', ...nodedir], { cwd: here, stdio: 'inherit', env: { ...process.env, MAKEFLAGS: `${process.env.MAKEFLAGS ?? ''} -k`.trim() } });
  for (const addon of addons) {
    // rebuild starts from an empty build/, so a file there was built by this run.
    const built = join(here, 'build', 'Release', `${addon.name}.node`);
    if (existsSync(built)) {
      copyFileSync(built, join(dist, `${addon.name}.node`));
      console.log(`[gpu-runtime] addon built: dist/${addon.name}.node`);
    } else {
      console.warn(`[gpu-runtime] ${addon.what} not built; ${addon.fallback}`);
    }
  }
}
const missing = addons.filter((addon) => !existsSync(join(dist, `${addon.name}.node`)));
if (process.env.EGPU_REQUIRE_ADDONS === '1' && missing.length > 0) {
  console.error(`[gpu-runtime] EGPU_REQUIRE_ADDONS=1 and not built: ${missing.map((addon) => `dist/${addon.name}.node`).join(', ')}`);
  process.exit(1);
}
console.log('[gpu-runtime] done');

/** node-gyp as npm ships it, for `node build.mjs` run outside npm (npm sets npm_config_node_gyp). */
function bundledNodeGyp() {
  const candidate = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  return existsSync(candidate) ? candidate : undefined;
}
