/**
 * Watches the buffers an unwrap can leave plaintext in: every output of an AES decipher's
 * update() and final() (thrown calls included) and every Buffer.concat's inputs and result.
 * A test unwraps, zeroes what it was given (as a caller does), then asks whether any other
 * buffer still holds the secret.
 */
import { createDecipheriv } from 'node:crypto';
import { vi } from 'vitest';

export interface PlaintextWatch {
  /** How many watched buffers still hold any 8-byte piece of `secret`. */
  holding(secret: Uint8Array): number;
  /** How many buffers were watched (a test can check it saw the unwrap at all). */
  readonly seen: number;
  restore(): void;
}

export function watchPlaintextCopies(): PlaintextWatch {
  const decipher = Object.getPrototypeOf(createDecipheriv('aes-256-cbc', Buffer.alloc(32), Buffer.alloc(16)));
  const update = vi.spyOn(decipher, 'update');
  const final = vi.spyOn(decipher, 'final');
  const concat = vi.spyOn(Buffer, 'concat');
  const buffers = (): Uint8Array[] => [
    ...[update, final, concat].flatMap((spy) => spy.mock.results.filter((r) => r.type === 'return').map((r) => r.value as Uint8Array)),
    ...concat.mock.calls.flatMap(([list]) => [...(list as readonly Uint8Array[])]),
  ];
  return {
    holding(secret) {
      const pieces: Buffer[] = [];
      for (let offset = 0; offset + 8 <= secret.length; offset += 8) pieces.push(Buffer.from(secret.subarray(offset, offset + 8)));
      return buffers().filter((b) => {
        const view = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
        return pieces.some((piece) => view.includes(piece));
      }).length;
    },
    get seen() {
      return buffers().length;
    },
    restore() {
      update.mockRestore();
      final.mockRestore();
      concat.mockRestore();
    },
  };
}
