// TEMPORARY: small-op round trips only, optionally with --cpu-prof in the children.
import { EgpClient } from '../assets/gpu-runtime/src/egp/client';
import { startLocalStack } from '../assets/gpu-runtime/src/egp/local-stack';
import { nowUs, quantile } from '../assets/gpu-runtime/src/egp/timing';
async function main() {
  const prof = process.env.PROF;
  const stack = await startLocalStack({ nodeArgs: prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [] });
  const gpu = await EgpClient.connect({ sgs: stack.sgsAddress, enclave: stack.enclave });
  const [a, b, out] = await Promise.all([gpu.malloc(4), gpu.malloc(4), gpu.malloc(4)]);
  await Promise.all([gpu.memcpyHtoD(a, Buffer.alloc(4)), gpu.memcpyHtoD(b, Buffer.alloc(4))]);
  const N = Number(process.env.N ?? 5000);
  const times: number[] = [];
  const { readFileSync } = await import('node:fs');
  const cpu = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 10000; };
  const sys = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return Number(f[12]) * 10000; };
  let c0: number[] = [];
  let s0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    const s = nowUs();
    await gpu.launchKernel('add', { a, b, out, count: 1 });
    times.push(nowUs() - s);
    if (i === N / 2) { c0 = [cpu(stack.sgs.pid!), cpu(stack.context.pid!), sys(stack.sgs.pid!), sys(stack.context.pid!)]; s0 = process.cpuUsage(); }
  }
  const c1 = [cpu(stack.sgs.pid!), cpu(stack.context.pid!), sys(stack.sgs.pid!), sys(stack.context.pid!)]; const s1 = process.cpuUsage(s0);
  console.log('cpu us/op: egp', ((s1.user + s1.system) / (N / 2)).toFixed(1), 'sgs', ((c1[0] - c0[0]) / (N / 2)).toFixed(1), 'ctx', ((c1[1] - c0[1]) / (N / 2)).toFixed(1), 'sys: egp', (s1.system / (N / 2)).toFixed(1), 'sgs', ((c1[2] - c0[2]) / (N / 2)).toFixed(1), 'ctx', ((c1[3] - c0[3]) / (N / 2)).toFixed(1));
  const tail = times.slice(N / 2);
  console.log('p50', quantile(tail, 0.5).toFixed(1), 'p10', quantile(tail, 0.1).toFixed(1), 'p90', quantile(tail, 0.9).toFixed(1));
  gpu.close();
  await stack.stop();
}
void main();
