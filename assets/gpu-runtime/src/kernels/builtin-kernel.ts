/**
 * How a built-in kernel is defined: its implementation is a JavaScript function written as
 * source text, compiled once here, and its digest is the SHA-384 of that function's text
 * (Function.prototype.toString, which for a compiled function is exactly its source).
 *
 * Why source text rather than a TypeScript function's toString(): the digest must name the
 * code that actually runs, and must be the same in every process that computes it (the
 * context, the EGP, SGS's log readers). A TypeScript function's text is whatever the build
 * tool printed: tsx minifies it, vitest keeps comments and re-indents, a bundle may rename
 * it. Text compiled at run time is the same bytes under every tool, and the check below
 * proves that what runs is what was hashed.
 */
import { createHash } from 'node:crypto';
import type { KernelArgs } from '../protocol/op-descriptor';
import { ArgsReader } from './kernel-args';
import { Kernel, KernelMemory, PreparedLaunch, elapsedUs } from './kernel';

/** The compiled implementation: typed arrays and counts in, results written in place. */
export type KernelImplementation = (...args: (Float32Array | number)[]) => void;

export interface BuiltinKernel extends Kernel {
  /** The implementation's source: exactly the text that is compiled, run and hashed. */
  readonly source: string;
  /** SHA-384 of `source`: what the headers of this kernel's launches carry. */
  readonly digest: Buffer;
}

/**
 * Reads and checks a launch's arguments (through `args`, which refuses unknown ones once
 * `done()`), and returns the implementation's arguments: views of the session's buffers
 * and counts.
 */
export type BindArguments = (args: ArgsReader, memory: KernelMemory) => (Float32Array | number)[];

export function defineBuiltin(name: string, source: string, bind: BindArguments): BuiltinKernel {
  const implementation = compile(name, source);
  const digest = createHash('sha384').update(Function.prototype.toString.call(implementation), 'utf8').digest();
  return {
    name,
    source,
    get digest() {
      return Buffer.from(digest); // a copy: no caller can change what the context compares with
    },
    prepare(args: KernelArgs, memory: KernelMemory): PreparedLaunch {
      const reader = new ArgsReader(args, name);
      const values = bind(reader, memory);
      reader.done();
      return {
        codeSha384: Buffer.from(digest),
        device: 'cpu',
        run() {
          const start = process.hrtime.bigint();
          implementation(...values);
          return elapsedUs(start);
        },
      };
    },
  };
}

function compile(name: string, source: string): KernelImplementation {
  // Compiling text is the point here (see the file comment); the text is a constant of this package.
  const implementation = new Function(`'use strict';\nreturn (${source});`)() as unknown;
  if (typeof implementation !== 'function' || Function.prototype.toString.call(implementation) !== source) {
    throw new Error(`built-in kernel ${name}: its source must be exactly one function expression`);
  }
  return implementation as KernelImplementation;
}
