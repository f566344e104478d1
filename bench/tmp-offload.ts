// TEMPORARY: only the offload measurement, for tuning.
import { DEFAULT_OFFLOAD_OPTIONS, measureOffload } from './offload';
const resnet = Number(process.env.RESNET ?? 40);
const small = Number(process.env.SMALL ?? 3000);
measureOffload({ ...DEFAULT_OFFLOAD_OPTIONS, resnetRequests: resnet, smallOps: small, warmupSmallOps: Math.min(1000, small) }).then((r) => {
  console.log(JSON.stringify(r));
});
