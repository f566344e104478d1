// Builds the runtime: dist/egpu.js (one bundle with its dependencies) and, where a C
// toolchain and Node's headers are present, the in-place AES-256-GCM addon
// (dist/aes_gcm.node). Without the addon the runtime uses node:crypto, slower but the same bytes.
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

if (existsSync(join(here, 'binding.gyp'))) {
  console.log('[gpu-runtime] building the AES-256-GCM addon (node-gyp)');
  const nodeGyp = process.env.npm_config_node_gyp;
  const nodedir = existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [];
  const [cmd, args] = nodeGyp ? [process.execPath, [nodeGyp]] : ['node-gyp', []];
  const result = spawnSync(cmd, [...args, 'rebuild', ...nodedir], { cwd: here, stdio: 'inherit' });
  const built = join(here, 'build', 'Release', 'aes_gcm.node');
  if (result.status === 0 && existsSync(built)) {
    copyFileSync(built, join(dist, 'aes_gcm.node'));
    console.log('[gpu-runtime] addon built: dist/aes_gcm.node');
  } else {
    console.warn('[gpu-runtime] addon not built; the runtime falls back to node:crypto for AES-256-GCM');
  }
}
console.log('[gpu-runtime] done');
