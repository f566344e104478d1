import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ENCLAVE_TO_HOST, HOST_TO_ENCLAVE } from '../../src/abe/frame-header';
import { sealBuffer } from '../../src/abe/frame';
import { parseFrame } from '../../src/abe/frame-codec';
import { AbeSession } from '../../src/abe/session';
import { refusal } from './helpers';

/** Both ends of one session, as a handshake leaves them (each with its own copy of the key). */
function sessionPair(): { enclave: AbeSession; context: AbeSession; key: Buffer } {
  const id = randomBytes(16);
  const key = randomBytes(32);
  return { enclave: new AbeSession(id, Buffer.from(key)), context: new AbeSession(id, Buffer.from(key)), key };
}

describe('AbeSession', () => {
  it('carries a launch both ways under one K_n: inputs to the context, results back', () => {
    const { enclave, context } = sessionPair();
    const digest = randomBytes(48);
    const input = randomBytes(3 * 1024 * 1024);
    const toContext = enclave.sealer(1, ENCLAVE_TO_HOST, digest);
    const atContext = context.opener(1, ENCLAVE_TO_HOST, digest);
    const received = [...sealBuffer(toContext, 0, input, true)].map((frame) => Buffer.from(atContext.open(frame).plaintext));
    atContext.end();
    expect(Buffer.concat(received).equals(input)).toBe(true);

    const result = randomBytes(1000);
    const back = context.sealer(1, HOST_TO_ENCLAVE, digest).seal(0, result, true);
    const opener = enclave.opener(1, HOST_TO_ENCLAVE, digest);
    expect(opener.open(back).plaintext.equals(result)).toBe(true);
  });

  it('never seals the same n twice in one direction (NONCE_REUSE), nor goes back', () => {
    const { enclave } = sessionPair();
    const digest = randomBytes(48);
    enclave.sealer(5, ENCLAVE_TO_HOST, digest);
    refusal(() => enclave.sealer(5, ENCLAVE_TO_HOST, digest), 'NONCE_REUSE');
    refusal(() => enclave.sealer(4, ENCLAVE_TO_HOST, digest), 'NONCE_REUSE');
    expect(() => enclave.sealer(5, HOST_TO_ENCLAVE, digest)).not.toThrow();
    expect(() => enclave.sealer(6, ENCLAVE_TO_HOST, digest)).not.toThrow();
  });

  it('refuses a replayed or older operation once a later one was accepted', () => {
    const { enclave, context } = sessionPair();
    const digest = randomBytes(48);
    const first = enclave.sealer(1, ENCLAVE_TO_HOST, digest).seal(0, Buffer.alloc(4), true);
    const third = enclave.sealer(3, ENCLAVE_TO_HOST, digest).seal(0, Buffer.alloc(4), true);
    context.opener(3, ENCLAVE_TO_HOST, digest).open(third);
    refusal(() => context.opener(3, ENCLAVE_TO_HOST, digest), 'REPLAY');
    refusal(() => context.opener(parseFrame(first).header.n, ENCLAVE_TO_HOST, digest), 'REPLAY'); // operation 1, delivered late
    expect(() => context.opener(3, HOST_TO_ENCLAVE, digest)).not.toThrow(); // the other direction has its own window
  });

  it('keeps a copy of K_n for the other direction only while the operation may still need it', () => {
    const { enclave, context } = sessionPair();
    const digest = randomBytes(48);
    const request = enclave.sealer(1, ENCLAVE_TO_HOST, digest).seal(0, randomBytes(10), true);
    expect(enclave.keptKeys).toBe(1); // for the answer
    context.opener(1, ENCLAVE_TO_HOST, digest).open(request);
    expect(context.keptKeys).toBe(1); // for the answer

    const answerSealer = context.sealer(1, HOST_TO_ENCLAVE, digest);
    expect(context.keptKeys).toBe(0);
    const answer = answerSealer.seal(0, Buffer.from('result'), true);
    const answerOpener = enclave.opener(1, HOST_TO_ENCLAVE, digest);
    expect(enclave.keptKeys).toBe(0);
    expect(answerOpener.open(answer).plaintext.toString()).toBe('result');
  });

  it('an abort after the first direction completed keeps the copy for the answer', () => {
    const { enclave, context } = sessionPair();
    const digest = randomBytes(48);
    const sealer = enclave.sealer(1, ENCLAVE_TO_HOST, digest);
    const opener = context.opener(1, ENCLAVE_TO_HOST, digest);
    opener.open(sealer.seal(0, randomBytes(10), true));
    sealer.abort();
    opener.abort();
    expect([enclave.keptKeys, context.keptKeys]).toEqual([1, 1]);
    const answer = context.sealer(1, HOST_TO_ENCLAVE, digest).seal(0, Buffer.from('result'), true);
    expect(enclave.opener(1, HOST_TO_ENCLAVE, digest).open(answer).plaintext.toString()).toBe('result');
  });

  describe('zeroises its copy of K_n when the operation fails or is aborted', () => {
    const digest = randomBytes(48);

    it('an opener refused on a forged frame (AUTH_FAILED)', () => {
      const { context } = sessionPair();
      const forged = new AbeSession(context.sessionId, randomBytes(32)).sealer(1, ENCLAVE_TO_HOST, digest).seal(0, Buffer.alloc(4), true);
      const opener = context.opener(1, ENCLAVE_TO_HOST, digest);
      expect(context.keptKeys).toBe(1);
      refusal(() => opener.open(forged), 'AUTH_FAILED');
      expect(context.keptKeys).toBe(0);
    });

    it('an opener refused on a frame of another kernel, and one ended before its last chunk', () => {
      const { enclave, context } = sessionPair();
      const wrong = enclave.sealer(1, ENCLAVE_TO_HOST, randomBytes(48)).seal(0, Buffer.alloc(4), true);
      refusal(() => context.opener(1, ENCLAVE_TO_HOST, digest).open(wrong), 'WRONG_DIGEST');
      expect(context.keptKeys).toBe(0);
      const cut = context.opener(2, ENCLAVE_TO_HOST, digest);
      refusal(() => cut.end(), 'TRUNCATED');
      expect(context.keptKeys).toBe(0);
    });

    it('an aborted opener and an aborted sealer', () => {
      const { enclave, context } = sessionPair();
      context.opener(1, ENCLAVE_TO_HOST, digest).abort();
      expect(context.keptKeys).toBe(0);
      const sealer = enclave.sealer(1, ENCLAVE_TO_HOST, digest);
      sealer.seal(0, Buffer.alloc(4), false);
      sealer.abort();
      expect(enclave.keptKeys).toBe(0);
    });

    it('a sealer or opener refused as it is created', () => {
      const { enclave, context } = sessionPair();
      refusal(() => enclave.sealer(1, ENCLAVE_TO_HOST, Buffer.alloc(47)), 'INVALID_ARGUMENT');
      refusal(() => context.opener(1, ENCLAVE_TO_HOST, Buffer.alloc(47)), 'INVALID_ARGUMENT');
      expect([enclave.keptKeys, context.keptKeys]).toEqual([0, 0]);
    });

    it('a failure does not take the copy another operation kept', () => {
      const { enclave } = sessionPair();
      enclave.sealer(1, ENCLAVE_TO_HOST, digest).seal(0, Buffer.alloc(4), true);
      enclave.sealer(2, ENCLAVE_TO_HOST, digest).abort();
      expect(enclave.keptKeys).toBe(1); // operation 1's, for its answer
    });
  });

  it('zeroises its key on close and then refuses to start operations', () => {
    const key = randomBytes(32);
    const session = new AbeSession(randomBytes(16), key);
    session.close();
    expect(key.equals(Buffer.alloc(32))).toBe(true);
    refusal(() => session.sealer(1, ENCLAVE_TO_HOST, randomBytes(48)), 'CLOSED');
    refusal(() => session.opener(1, ENCLAVE_TO_HOST, randomBytes(48)), 'CLOSED');
  });

  it('refuses an operation counter beyond 2^53 - 1: TOO_LARGE, as ABE.md\'s Limits say', () => {
    const { enclave, context } = sessionPair();
    for (const n of [2 ** 53, 2 ** 64]) {
      refusal(() => enclave.sealer(n, ENCLAVE_TO_HOST, randomBytes(48)), 'TOO_LARGE');
      refusal(() => context.opener(n, ENCLAVE_TO_HOST, randomBytes(48)), 'TOO_LARGE');
    }
    refusal(() => enclave.sealer(1.5, ENCLAVE_TO_HOST, randomBytes(48)), 'INVALID_ARGUMENT');
    expect(() => enclave.sealer(Number.MAX_SAFE_INTEGER, ENCLAVE_TO_HOST, randomBytes(48))).not.toThrow();
  });

  it('refuses a direction other than 0 or 1', () => {
    const { enclave } = sessionPair();
    refusal(() => enclave.sealer(1, 2 as 0, randomBytes(48)), 'INVALID_ARGUMENT');
    refusal(() => enclave.opener(1, 2 as 0, randomBytes(48)), 'INVALID_ARGUMENT');
  });
});
