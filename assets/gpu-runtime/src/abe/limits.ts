/**
 * Hard limits of ABE v1. Every length read from the wire is checked against one of these
 * before anything is allocated for it.
 */

/** Largest plaintext (and so ciphertext) one frame carries: larger buffers move in chunks. */
export const MAX_CHUNK_BYTES = 1024 * 1024;

/** Largest encoded frame header (a typical one is about 130 bytes). */
export const MAX_HEADER_BYTES = 256;

/** Largest frame body after the 4-byte length prefix: a full chunk plus room for header, CBOR heads and tag. */
export const MAX_FRAME_BYTES = MAX_CHUNK_BYTES + 4096;

/**
 * Most chunks one operation may carry in one direction: 2^17 chunks of 1 MiB = 128 GiB,
 * more than any single GPU's memory. Chunk numbers count per operation and direction
 * (not per buffer) because they are the nonce under the operation's key.
 */
export const MAX_CHUNKS = 1 << 17;

/** Largest buffer id in a header (a uint32, like a device handle). */
export const MAX_BUFFER_ID = 0xffff_ffff;

/** Largest operation counter n: kept within JavaScript's exact integers. */
export const MAX_OPERATION = Number.MAX_SAFE_INTEGER;

/** Largest attestation document a handshake reply may carry (NSM documents are about 4.5 KiB). */
export const MAX_ATTESTATION_BYTES = 16 * 1024;
