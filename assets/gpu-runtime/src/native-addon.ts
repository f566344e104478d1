/**
 * The runtime's native addons (dist/*.node, built from native/ by build.mjs): found next to
 * the bundle (dist/egpu.js -> dist/NAME.node) or, when running from the sources (tests, tsx),
 * in the package's dist/. Each addon is optional: its caller falls back or refuses cleanly.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

/**
 * Loads `dist/<name>.node`; undefined when it was not built. A file that exists but does not
 * load is a broken build and throws.
 */
export function loadAddon<T>(name: string): T | undefined {
  const file = `${name}.node`;
  const found = [path.join(__dirname, file), path.join(__dirname, '..', 'dist', file)].find((candidate) => existsSync(candidate));
  return found === undefined ? undefined : createRequire(__filename)(found) as T;
}
