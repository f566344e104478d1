/**
 * The replay journal's compaction must never change what a replay rebuilds: for random
 * programs over a small model of the context's memory (malloc zero-fills, htod writes a
 * prefix, add/relu write count f32, onnx.run replaces its outputs, an unknown kernel writes
 * every buffer it names), replaying the compacted journal gives every live buffer the same
 * bytes as replaying all of it. And a long inference loop keeps it small, also when it
 * uploads less than its input buffer holds.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Journal, StateChange } from '../../src/egp/journal';
import { launchEffects } from '../../src/egp/kernel-effects';
import { ZERO_DIGEST } from '../../src/abe/frame-header';
import type { KernelArgs } from '../../src/protocol/op-descriptor';

type Step =
  | { kind: 'malloc'; size: number }
  | { kind: 'htod'; target: number; length: number; seed: number }
  | { kind: 'launch'; kernel: 'add' | 'relu' | 'onnx.run' | 'mystery'; picks: number[]; count: number }
  | { kind: 'free'; target: number };

/** Replays changes into a fresh memory, with the semantics of src/context and src/kernels. */
function replay(changes: readonly StateChange[]): Map<number, Buffer> {
  const memory = new Map<number, Buffer>();
  const f32 = (id: number) => new Float32Array(memory.get(id)!.buffer, memory.get(id)!.byteOffset, memory.get(id)!.length / 4);
  for (const { request, data } of changes) {
    switch (request.op) {
      case 'malloc': memory.set(request.buffer, Buffer.alloc(request.size)); break;
      case 'free': memory.delete(request.buffer); break;
      case 'htod': data!.copy(memory.get(request.buffer)!); break;
      case 'launch': {
        const args = request.args;
        const n = (name: string) => args.get(name) as number;
        if (request.kernel === 'add') {
          const [a, b, out] = [f32(n('a')), f32(n('b')), f32(n('out'))];
          for (let i = 0; i < n('count'); i++) out[i] = a[i] + b[i];
        } else if (request.kernel === 'relu') {
          const [input, out] = [f32(n('input')), f32(n('out'))];
          for (let i = 0; i < n('count'); i++) out[i] = Math.max(input[i], 0);
        } else if (request.kernel === 'onnx.run') {
          const model = memory.get(n('model'))!;
          const input = memory.get((args.get('inputBuffers') as number[])[0])!;
          const output = Buffer.alloc(8 + (model.length % 8));
          for (let i = 0; i < output.length; i++) output[i] = (model[i % Math.max(1, model.length)] ?? 0) ^ (input[i % Math.max(1, input.length)] ?? 7);
          memory.set((args.get('outputBuffers') as number[])[0], output); // resized, as memory.resize() does
        } else {
          const ids = args.get('buffers') as number[];
          const mixed = ids.reduce((sum, id) => sum + memory.get(id)!.reduce((s, byte) => s + byte, 0), 1);
          ids.forEach((id, i) => memory.get(id)!.fill((mixed + i) & 0xff, 0, Math.min(4, memory.get(id)!.length)));
        }
        break;
      }
    }
  }
  return memory;
}

/**
 * Turns random steps into the changes a client would journal (only valid operations: the
 * context refuses the others and they are never journaled), tracking sizes as the client does.
 */
function program(steps: readonly Step[]): StateChange[] {
  const live: number[] = [];
  const sizes = new Map<number, number | undefined>();
  const changes: StateChange[] = [];
  let next = 1;
  const pick = (i: number) => live[i % live.length];
  for (const step of steps) {
    if (step.kind === 'malloc') {
      const buffer = next++;
      live.push(buffer);
      sizes.set(buffer, step.size);
      changes.push({ request: { op: 'malloc', buffer, size: step.size }, digest: ZERO_DIGEST });
      continue;
    }
    if (live.length === 0) continue;
    if (step.kind === 'free') {
      const buffer = pick(step.target);
      live.splice(live.indexOf(buffer), 1);
      changes.push({ request: { op: 'free', buffer }, digest: ZERO_DIGEST });
    } else if (step.kind === 'htod') {
      const buffer = pick(step.target);
      const size = sizes.get(buffer);
      const length = size === undefined ? 0 : Math.min(step.length, size);
      const data = Buffer.alloc(length, step.seed);
      changes.push({ request: { op: 'htod', buffer, size: length }, data, digest: ZERO_DIGEST, writes: [buffer], overwrites: length === size ? [buffer] : [] });
    } else {
      const ids = step.picks.map(pick);
      const args: KernelArgs = new Map();
      if (step.kernel === 'add' || step.kernel === 'relu') {
        const names = step.kernel === 'add' ? ['a', 'b', 'out'] : ['input', 'out'];
        const known = ids.slice(0, names.length).map((id) => sizes.get(id));
        if (known.some((s) => s === undefined)) continue;
        const count = Math.min(step.count, ...known.map((s) => Math.floor(s! / 4)));
        names.forEach((name, i) => args.set(name, ids[i]));
        args.set('count', count);
      } else if (step.kernel === 'onnx.run') {
        const [model, input, output] = ids;
        if (output === model || output === input) continue;
        args.set('model', model).set('inputBuffers', [input]).set('outputBuffers', [output]);
      } else {
        args.set('buffers', [...new Set(ids)]);
      }
      const effects = launchEffects(step.kernel, args, { has: (id) => live.includes(id) }, (id) => sizes.get(id));
      effects.resizes.forEach((id) => sizes.set(id, undefined));
      changes.push({ request: { op: 'launch', kernel: step.kernel, args }, digest: ZERO_DIGEST, ...effects });
    }
  }
  return changes;
}

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('malloc' as const), size: fc.integer({ min: 0, max: 24 }) }),
  fc.record({ kind: fc.constant('htod' as const), target: fc.nat(), length: fc.integer({ min: 0, max: 24 }), seed: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    kind: fc.constant('launch' as const),
    kernel: fc.constantFrom('add' as const, 'relu' as const, 'onnx.run' as const, 'mystery' as const),
    picks: fc.array(fc.nat(), { minLength: 3, maxLength: 3 }),
    count: fc.integer({ min: 0, max: 6 }),
  }),
  fc.record({ kind: fc.constant('free' as const), target: fc.nat() }),
);

/** Checks that the compacted changes rebuild the same buffers, with the same bytes, as all of them. */
function expectSameMemory(all: readonly StateChange[], compacted: readonly StateChange[]): void {
  const full = replay(all);
  const rebuilt = replay(compacted);
  expect([...rebuilt.keys()].sort()).toEqual([...full.keys()].sort());
  for (const [id, bytes] of full) expect(rebuilt.get(id)!.equals(bytes), `buffer ${id}`).toBe(true);
}

/** A journal, and every change appended to it (for expectSameMemory). */
function recordedJournal(): { journal: Journal; all: StateChange[]; append: (change: StateChange) => void } {
  const journal = new Journal();
  const all: StateChange[] = [];
  return { journal, all, append: (change) => { all.push(change); journal.append(change); } };
}

describe('EGP replay journal', () => {
  it('compaction never changes what a replay rebuilds', () => {
    fc.assert(fc.property(fc.array(stepArbitrary, { maxLength: 200 }), (steps) => {
      const changes = program(steps);
      const journal = new Journal();
      changes.forEach((change) => journal.append(change)); // compacts along the way
      journal.compact();
      expect(journal.length).toBeLessThanOrEqual(changes.length);
      expectSameMemory(changes, journal.changes);
    }), { numRuns: 400 });
  });

  it('keeps an inference loop to its last request', () => {
    const journal = new Journal();
    const append = (change: StateChange) => journal.append(change);
    [1, 2, 3].forEach((buffer) => append({ request: { op: 'malloc', buffer, size: buffer === 3 ? 0 : 64 }, digest: ZERO_DIGEST }));
    append({ request: { op: 'htod', buffer: 1, size: 64 }, data: Buffer.alloc(64, 1), digest: ZERO_DIGEST, writes: [1], overwrites: [1] });
    const args: KernelArgs = new Map<string, number | number[]>([['model', 1], ['inputBuffers', [2]], ['outputBuffers', [3]]]);
    for (let i = 0; i < 10_000; i++) {
      append({ request: { op: 'htod', buffer: 2, size: 64 }, data: Buffer.alloc(64, i), digest: ZERO_DIGEST, writes: [2], overwrites: [2] });
      append({ request: { op: 'launch', kernel: 'onnx.run', args }, digest: ZERO_DIGEST, ...launchEffects('onnx.run', args, new Set([1, 2, 3]), () => 64) });
    }
    journal.compact();
    expect(journal.changes.map((c) => c.request.op)).toEqual(['malloc', 'malloc', 'malloc', 'htod', 'htod', 'launch']);
    expect(journal.changes[4].data![0]).toBe(9_999 & 0xff);
    expect(journal.bytes).toBe(128);
  });

  it('keeps a loop of partial uploads to its last upload', () => {
    // htod(64 bytes into a 1 KiB buffer) -> relu (replaces out) -> dtoh, over and over
    const { journal, all: changes, append } = recordedJournal();
    [1, 2].forEach((buffer) => append({ request: { op: 'malloc', buffer, size: 1024 }, digest: ZERO_DIGEST }));
    const args: KernelArgs = new Map<string, number>([['input', 1], ['out', 2], ['count', 256]]);
    for (let i = 0; i < 10_000; i++) {
      const upload: StateChange = { request: { op: 'htod', buffer: 1, size: 64 }, data: Buffer.alloc(64, i), digest: ZERO_DIGEST, writes: [1], overwrites: [] };
      const relu: StateChange = { request: { op: 'launch', kernel: 'relu', args }, digest: ZERO_DIGEST, ...launchEffects('relu', args, new Set([1, 2]), () => 1024) };
      append(upload);
      append(relu);
      expect(journal.length).toBeLessThanOrEqual(16);
    }
    journal.compact();
    expect(journal.changes.map((c) => c.request.op)).toEqual(['malloc', 'malloc', 'htod', 'launch']);
    expect(journal.changes[2].data![0]).toBe(9_999 & 0xff);
    expect(journal.bytes).toBe(64);
    expectSameMemory(changes, journal.changes);
  });

  it('keeps an upload only while no later one at least as long rewrites it before a read', () => {
    // A full upload, then uploads of 4, 12, 8 and 16 bytes into 32, each read by relu; then
    // uploads with no read between them: a shorter one does not cover a longer one.
    const { journal, all, append } = recordedJournal();
    [1, 2].forEach((buffer) => append({ request: { op: 'malloc', buffer, size: 32 }, digest: ZERO_DIGEST }));
    const htod = (size: number, seed: number): StateChange =>
      ({ request: { op: 'htod', buffer: 1, size }, data: Buffer.alloc(size, seed), digest: ZERO_DIGEST, writes: [1], overwrites: size === 32 ? [1] : [] });
    const args: KernelArgs = new Map<string, number>([['input', 1], ['out', 2], ['count', 8]]);
    const relu = (): StateChange => ({ request: { op: 'launch', kernel: 'relu', args }, digest: ZERO_DIGEST, ...launchEffects('relu', args, new Set([1, 2]), () => 32) });
    append(htod(32, 0x40));
    for (let i = 0; i < 1_000; i++) {
      append(htod([4, 12, 8, 16][i % 4], i & 0x3f));
      append(relu());
    }
    append(htod(8, 0x41)); // a read of buffer 1 would need this and the 16 and 12 bytes before: none comes
    append(htod(4, 0x42));
    append(htod(12, 0x43));
    journal.compact();
    // The full upload, then the last 16-byte one (i = 999); the 8 and 4 bytes are covered by the 12.
    expect(journal.changes.filter((c) => c.request.op === 'htod').map((c) => c.request.op === 'htod' && c.request.size)).toEqual([32, 16, 12]);
    expectSameMemory(all, journal.changes);
  });

  it('names the live buffers launches wrote as checkpoint candidates', () => {
    const journal = new Journal();
    [1, 2, 3].forEach((buffer) => journal.append({ request: { op: 'malloc', buffer, size: 16 }, digest: ZERO_DIGEST }));
    journal.append({ request: { op: 'htod', buffer: 2, size: 16 }, data: Buffer.alloc(16, 1), digest: ZERO_DIGEST, writes: [2], overwrites: [2] });
    const args: KernelArgs = new Map<string, number>([['a', 1], ['b', 2], ['out', 1], ['count', 4]]);
    journal.append({ request: { op: 'launch', kernel: 'add', args }, digest: ZERO_DIGEST, ...launchEffects('add', args, new Set([1, 2, 3]), () => 16) });
    const relu: KernelArgs = new Map<string, number>([['input', 2], ['out', 3], ['count', 4]]);
    journal.append({ request: { op: 'launch', kernel: 'relu', args: relu }, digest: ZERO_DIGEST, ...launchEffects('relu', relu, new Set([1, 2, 3]), () => 16) });
    journal.append({ request: { op: 'free', buffer: 3 }, digest: ZERO_DIGEST });
    expect(journal.checkpointCandidates()).toEqual([1]);
  });
});
