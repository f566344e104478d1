/**
 * onnxruntime-node, loaded on first use (a 45 MB native library that builtin-only contexts
 * and every other egpu command never need), and the session options the context uses.
 *
 * The options are exported so that a direct run (the demo's reference, the benchmark's
 * baseline) builds its InferenceSession with exactly the same ones: same execution provider,
 * same thread counts, same graph optimisations. With the same options onnxruntime computes
 * the same bits, which is what lets the demo compare offloaded outputs byte for byte.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { RuntimeError } from '../errors';
import { DataType, encodeModel } from '../onnx/onnx-writer';

export type OnnxRuntime = typeof Ort;
export type OnnxSession = Ort.InferenceSession;
export type OnnxProvider = 'cpu' | 'cuda';

/** Intra-op threads when none are given: one, so runs are reproducible and leave a core to the event loop. */
export const DEFAULT_ONNX_THREADS = 1;
export const MAX_ONNX_THREADS = 256;

export interface OnnxSettings {
  /** onnxruntime's intra-op thread pool size. */
  readonly threads: number;
  readonly provider: OnnxProvider;
}

/** The InferenceSession options for `settings`: pass the same to a direct run to get the same bits. */
export function onnxSessionOptions(settings: OnnxSettings): Ort.InferenceSession.SessionOptions {
  if (!Number.isSafeInteger(settings.threads) || settings.threads < 1 || settings.threads > MAX_ONNX_THREADS) {
    throw new RuntimeError('INVALID_ARGUMENT', `onnxruntime threads must be 1 to ${MAX_ONNX_THREADS}, got ${settings.threads}`);
  }
  return {
    executionProviders: [settings.provider],
    intraOpNumThreads: settings.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
}

let runtime: Promise<OnnxRuntime> | undefined;

export function loadOnnxRuntime(): Promise<OnnxRuntime> {
  runtime ??= import('onnxruntime-node').then(
    (module) => {
      const ort = ('default' in module && (module.default as OnnxRuntime | undefined)?.InferenceSession ? module.default : module) as OnnxRuntime;
      ort.env.logLevel = 'error'; // its warnings (e.g. unused initializers) are not the operator's concern
      return ort;
    },
    (error: unknown) => {
      runtime = undefined;
      throw new RuntimeError('ONNXRUNTIME_UNAVAILABLE', `onnxruntime-node cannot be loaded: ${(error as Error).message}`);
    },
  );
  return runtime;
}

/**
 * The provider to use: 'cpu' and 'cuda' as asked ('cuda' fails at the first model if it does
 * not load); 'auto' is 'cuda' when onnxruntime-node's CUDA provider library is installed
 * beside its binding and a one-node probe model loads with it, else 'cpu'. The file check
 * comes first so a CPU-only host never sees onnxruntime's load-failure log.
 */
export async function resolveOnnxProvider(preference: OnnxProvider | 'auto', threads = DEFAULT_ONNX_THREADS): Promise<OnnxProvider> {
  if (preference !== 'auto') return preference;
  if (!cudaProviderInstalled()) return 'cpu';
  const ort = await loadOnnxRuntime();
  try {
    const probe = await ort.InferenceSession.create(probeModel(), onnxSessionOptions({ threads, provider: 'cuda' }));
    await probe.release();
    return 'cuda';
  } catch {
    return 'cpu';
  }
}

function cudaProviderInstalled(): boolean {
  try {
    const packageDir = dirname(require.resolve('onnxruntime-node/package.json'));
    return existsSync(join(packageDir, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'));
  } catch {
    return false;
  }
}

/** y = Relu(x) over one float: the smallest model that proves a provider loads. */
function probeModel(): Buffer {
  return encodeModel({
    irVersion: 8,
    opsetImports: [{ version: 17 }],
    producerName: 'egpu',
    graph: {
      name: 'probe',
      nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
      inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: [1] }],
      outputs: [{ name: 'y', elemType: DataType.FLOAT, shape: [1] }],
    },
  });
}
