/**
 * `npm run bench`: ABE frame throughput against OpenSSL's single-core AES-256-GCM measured
 * in the same run, and handshake latency. Figures only, never assertions (DESIGN.md 6),
 * except that the bar (sealing at 1 MiB >= 80% of OpenSSL) is printed as met or not.
 */
import { activeBackend, nodeCryptoBackend } from '../assets/gpu-runtime/src/abe/aes-gcm';
import { CHUNKS_PER_OPERATION, openThroughput, sealThroughput } from './abe-throughput';
import { handshakeLatency } from './handshake';
import { opensslSpeed } from './openssl-speed';

const SIZES = [{ label: '1 KiB', bytes: 1024 }, { label: '64 KiB', bytes: 64 * 1024 }, { label: '1 MiB', bytes: 1024 * 1024 }];
const OPTIONS = { runs: 5, secondsPerRun: 0.25 };
const REQUIRED_RATIO = 0.8;

const gbps = (value: number | undefined) => (value === undefined ? 'n/a' : value.toFixed(2)).padStart(10);
const percent = (value: number | undefined) => (value === undefined ? 'n/a' : `${Math.round(value * 100)}%`).padStart(10);
const ms = ({ medianMs, minMs }: { medianMs: number; minMs: number }) => `${medianMs.toFixed(2)} ms median, ${minMs.toFixed(2)} ms min`;

async function main(): Promise<void> {
  const backends = activeBackend === nodeCryptoBackend ? [activeBackend] : [activeBackend, nodeCryptoBackend];
  console.log(`ABE v1 frames: AES-256-GCM backend in use: ${activeBackend.name}${activeBackend === nodeCryptoBackend ? ' (addon not built: npm run build:runtime)' : ''}`);
  console.log(`node ${process.version}, OpenSSL ${process.versions.openssl}; best of ${OPTIONS.runs} runs of ${OPTIONS.secondsPerRun} s; ${CHUNKS_PER_OPERATION} chunks per operation; GB/s = 10^9 bytes/s of plaintext`);
  console.log('');
  console.log('seal/new: each frame in new memory; seal/reuse: frames written into a reused buffer (FrameSealer.seal(..., into))');
  console.log('');
  const columns = ['seal/new', 'seal/reuse', 'open', 'openssl', 'new/ssl', 'reuse/ssl', 'open/ssl'];
  console.log(`${'size'.padEnd(7)} ${'backend'.padEnd(12)} ${columns.map((c) => c.padStart(10)).join(' ')}`);
  let sealRatioAt1MiB: number | undefined;
  for (const size of SIZES) {
    const openssl = opensslSpeed(size.bytes);
    for (const backend of backends) {
      const sealNew = sealThroughput(size.bytes, backend, OPTIONS, false);
      const sealReuse = sealThroughput(size.bytes, backend, OPTIONS, true);
      const open = openThroughput(size.bytes, backend, OPTIONS);
      const ratio = (value: number) => (openssl === undefined ? undefined : value / openssl);
      if (backend === activeBackend && size.bytes === 1024 * 1024) sealRatioAt1MiB = ratio(sealReuse);
      const cells = [gbps(sealNew), gbps(sealReuse), gbps(open), gbps(openssl), percent(ratio(sealNew)), percent(ratio(sealReuse)), percent(ratio(open))];
      console.log(`${size.label.padEnd(7)} ${backend.name.padEnd(12)} ${cells.join(' ')}`);
    }
  }
  console.log('');
  console.log(sealRatioAt1MiB === undefined
    ? 'Sealing at 1 MiB vs OpenSSL: not measured (no openssl binary on PATH)'
    : `Sealing (reused frame buffer) at 1 MiB is ${Math.round(sealRatioAt1MiB * 100)}% of OpenSSL single-core (required: >= ${REQUIRED_RATIO * 100}%): ${sealRatioAt1MiB >= REQUIRED_RATIO ? 'met' : 'NOT met'}`);

  const handshake = await handshakeLatency(30);
  console.log('');
  console.log('Handshake (30 calls each):');
  console.log(`  key agreement only (2 key pairs, 2 ECDH P-384, 2 HKDF):  ${ms(handshake.keyAgreement)}`);
  console.log(`  attestation document signing (simulated NSM):           ${ms(handshake.attest)}`);
  console.log(`  attestation verification (chain, ES384, nonce, PCRs):   ${ms(handshake.verify)}`);
  console.log(`  whole handshake with simulated NSM and verifier:        ${ms(handshake.full)}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
