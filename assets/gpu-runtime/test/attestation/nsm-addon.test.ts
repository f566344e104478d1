/**
 * The NSM addon (dist/nsm.node) where it was built, and `egpu egp`'s choice of NSM. Nothing
 * here opens a device: the machines that run the tests have no /dev/nsm (and no test may use
 * another device), so the errno paths run on a path that does not exist (open fails) and on
 * a regular file (open succeeds, NSM_IOCTL_RAW fails with ENOTTY). The ioctl against a real
 * NSM has not run here.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openFdCount } from '../protocol/vsock-helpers';
import { asyncRefusal } from '../refusal';
import { COMMANDS } from '../../src/cli';
import { dispatch } from '../../src/cli/command';
import { NSM_REQUEST_MAX_BYTES, NSM_RESPONSE_MAX_BYTES, NsmDevice, NsmError, encodeDescribePcrRequest, loadNsmAddon } from '../../src/attestation/nsm-device';

const addon = loadNsmAddon();
const NO_ADDON = 'dist/nsm.node is not built (node assets/gpu-runtime/build.mjs builds it on Linux; CI does)';
if (addon === undefined) console.warn(`NSM addon tests: ${NO_ADDON}; the tests that need it are skipped`);

const scratch = mkdtempSync(path.join(tmpdir(), 'egpu-nsm-addon-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A path that does not exist, checked. */
function missingPath(): string {
  const missing = path.join(scratch, 'absent', 'nsm');
  expect(existsSync(missing)).toBe(false);
  return missing;
}

/** A regular file: opening it O_RDWR is harmless, and the NSM ioctl on it fails with ENOTTY. */
function regularFile(name = 'not-a-device'): string {
  const file = path.join(scratch, name);
  writeFileSync(file, '');
  return file;
}

describe.skipIf(addon === undefined)('the NSM addon', () => {
  it('computes NSM_IOCTL_RAW as _IOWR(0x0A, 0, 32-byte struct nsm_raw) and has the driver\'s limits', () => {
    // _IOC(dir = read|write = 3, type = 0x0A, nr = 0, size = 32) on x86_64 and arm64 (the generic layout).
    if (process.arch === 'x64' || process.arch === 'arm64') expect(addon!.ioctlNumber).toBe(0xc0200a00);
    expect(addon!.ioctlNumber).toBe(((3 << 30) >>> 0) + (32 << 16) + (0x0a << 8));
    expect(addon!.requestMaxBytes).toBe(NSM_REQUEST_MAX_BYTES);
    expect(addon!.responseMaxBytes).toBe(NSM_RESPONSE_MAX_BYTES);
  });

  it('rejects with ENOENT from open(2) when the path does not exist', async () => {
    const missing = missingPath();
    const pending = addon!.request(missing, encodeDescribePcrRequest(0));
    expect(pending).toBeInstanceOf(Promise);
    const error = await asyncRefusal(() => pending, Error);
    expect(error).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'open', path: missing });
    expect(error.message).toBe(`open ${missing}: No such file or directory`);
  });

  it('rejects with ENOTTY from ioctl(2) on something that is not the NSM', async () => {
    const file = regularFile();
    expect(await asyncRefusal(() => addon!.request(file, encodeDescribePcrRequest(0)), Error)).toMatchObject({ code: 'ENOTTY', syscall: 'ioctl', path: file });
  });

  it('refuses, before any system call, a request that is empty or over 4096 bytes, and wrong arguments', () => {
    const file = regularFile();
    expect(() => addon!.request(file, Buffer.alloc(0))).toThrow(expect.objectContaining({ name: 'RangeError', code: 'EMSGSIZE' }));
    expect(() => addon!.request(file, Buffer.alloc(NSM_REQUEST_MAX_BYTES + 1))).toThrow(/1 to 4096 bytes, this one is 4097/);
    expect(() => (addon!.request as (...args: unknown[]) => unknown)(file)).toThrow(TypeError);
    expect(() => (addon!.request as (...args: unknown[]) => unknown)(7, Buffer.alloc(1))).toThrow(/path must be a string/);
    expect(() => (addon!.request as (...args: unknown[]) => unknown)(file, 'text')).toThrow(/must be a Buffer/);
    expect(() => addon!.request('', Buffer.alloc(1))).toThrow(/non-empty path/);
    expect(() => addon!.request(`${file}\0x`, Buffer.alloc(1))).toThrow(/without NUL bytes/);
  });

  it('runs many requests at once, and closes each descriptor it opened', async () => {
    const file = regularFile();
    const fdsBefore = openFdCount();
    const requests = Array.from({ length: 32 }, () => addon!.request(file, encodeDescribePcrRequest(1)));
    const results = await Promise.allSettled(requests);
    expect(results.every((result) => result.status === 'rejected' && (result.reason as NodeJS.ErrnoException).code === 'ENOTTY')).toBe(true);
    expect(openFdCount()).toBe(fdsBefore); // one descriptor per request, closed after it
  });

  it('gives NsmDevice typed errors: NSM_IO for the failed ioctl, NSM_UNAVAILABLE once the path is gone', async () => {
    const file = regularFile('vanishing');
    const device = NsmDevice.open({ path: file });
    const io = await asyncRefusal(() => device.describePcr(0), NsmError);
    expect(io).toMatchObject({ code: 'NSM_IO', request: 'DescribePCR', errno: 'ENOTTY' });
    rmSync(file);
    const gone = await asyncRefusal(() => device.attest({ nonce: Buffer.alloc(32) }), NsmError);
    expect(gone).toMatchObject({ code: 'NSM_UNAVAILABLE', request: 'Attestation', errno: 'ENOENT' });
  });
});

describe('egpu egp: the choice of NSM', () => {
  function capture() {
    const out = { stdout: '', stderr: '' };
    return { out, io: { stdout: (t: string) => { out.stdout += t; }, stderr: (t: string) => { out.stderr += t; } } };
  }
  const base = () => ['egp', '--listen', `unix:${path.join(scratch, 'egp.sock')}`, '--sgs', `unix:${path.join(scratch, 'sgs.sock')}`];

  it('needs exactly one of --nsm-device and --nsm-state (status 2)', async () => {
    for (const extra of [[], ['--nsm-device', '/dev/nsm', '--nsm-state', scratch]]) {
      const { out, io } = capture();
      expect(await dispatch(COMMANDS, [...base(), ...extra], io)).toBe(2);
      expect(out.stderr).toMatch(/give exactly one of --nsm-device PATH \(in a Nitro Enclave: \/dev\/nsm\) and --nsm-state DIR \(local mode\)/);
    }
  });

  it('takes --pcr only with the simulated NSM, and a non-empty device path', async () => {
    const pcr = `0=${'ab'.repeat(48)}`;
    let { out, io } = capture();
    expect(await dispatch(COMMANDS, [...base(), '--nsm-device', missingPath(), '--pcr', pcr], io)).toBe(2);
    expect(out.stderr).toMatch(/--pcr sets the simulated enclave's PCRs/);
    ({ out, io } = capture());
    expect(await dispatch(COMMANDS, [...base(), '--nsm-device', ''], io)).toBe(2);
    expect(out.stderr).toMatch(/--nsm-device needs the device path/);
  });

  it('refuses with NSM_UNAVAILABLE and the fix when the device does not exist (status 1, nothing listening)', async () => {
    const { out, io } = capture();
    expect(await dispatch(COMMANDS, [...base(), '--nsm-device', missingPath()], io)).toBe(1);
    expect(out.stderr).toMatch(/^egpu egp: NSM_UNAVAILABLE: .* does not exist .*: run inside a Nitro Enclave, or use --nsm-state for local mode\n$/);
    expect(existsSync(path.join(scratch, 'egp.sock'))).toBe(false);
  });

  it.skipIf(addon === undefined)('reports the device\'s failure as NSM_IO (status 1) when the path is not an NSM', async () => {
    const { out, io } = capture();
    expect(await dispatch(COMMANDS, [...base(), '--nsm-device', regularFile()], io)).toBe(1);
    expect(out.stderr).toMatch(/^egpu egp: NSM_IO: DescribePCR on .* failed: ENOTTY: /);
    expect(existsSync(path.join(scratch, 'egp.sock'))).toBe(false);
  });
});
