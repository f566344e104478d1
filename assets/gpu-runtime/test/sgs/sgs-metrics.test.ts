/**
 * EnclaveGPU metrics: the exact PutMetricData requests (namespace, names and units from the
 * catalogue, both dimension sets, latency as Values/Counts), batching within the API's
 * limits, the bounded buffer while CloudWatch is unreachable, and the numbers a real run
 * through SGS produces. CloudWatch is mocked with aws-sdk-client-mock; nothing leaves.
 */
import { CloudWatchClient, InvalidParameterCombinationException, InvalidParameterValueException, MetricDatum, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NAMESPACE, RUNTIME_METRICS } from '../../../../lib/observability/metric-catalogue';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { MAX_DATA_PER_CALL, MAX_VALUES_PER_DISTRIBUTION } from '../../src/sgs/metrics/metric-data';
import { MetricPublisher } from '../../src/sgs/metrics/metric-publisher';
import { MetricRecorder } from '../../src/sgs/metrics/metric-recorder';
import { INCREMENT_DIGEST, INCREMENT_KERNEL } from './fake-context';
import { IMAGE_DIMENSION } from './fixtures';
import { Harness } from './harness';

const INSTANCE = 'i-0123456789abcdef0';
const IMAGE = 'a1b2c3d4e5f60718';
const cloudWatch = mockClient(CloudWatchClient);
const client = () => new CloudWatchClient({ region: 'us-east-1' });

beforeEach(() => cloudWatch.reset());
afterEach(() => cloudWatch.reset());

function sentData(): MetricDatum[] {
  return cloudWatch.commandCalls(PutMetricDataCommand).flatMap((call) => call.args[0].input.MetricData ?? []);
}

const bothSets = (image: string) => [
  [{ Name: 'InstanceId', Value: INSTANCE }, { Name: 'EnclaveImage', Value: image }],
  [{ Name: 'EnclaveImage', Value: image }],
];

describe('the metric recorder and publisher', () => {
  it('sends one interval as the exact PutMetricData request', async () => {
    cloudWatch.on(PutMetricDataCommand).resolves({});
    let now = 1_700_000_000_000;
    const recorder = new MetricRecorder(() => now);
    recorder.sessionOpened(IMAGE);
    recorder.bytesIn(IMAGE, 1000);
    recorder.bytesIn(IMAGE, 500);
    recorder.bytesOut(IMAGE, 700);
    recorder.queued(IMAGE, +1);
    recorder.queued(IMAGE, +1);
    recorder.queued(IMAGE, -2);
    recorder.operation(IMAGE, 1.23456, 30_000_000, 'gpu'); // 30 s of GPU compute in a 60 s interval
    recorder.operation(IMAGE, 1.23449, 0, undefined);
    recorder.operation(IMAGE, 7, 20_000_000, 'cpu'); // 20 s on the CPU: not GPU utilization
    recorder.launch(IMAGE);
    recorder.replay(IMAGE);
    recorder.attestationFailure(IMAGE);
    now += 60_000;
    const publisher = new MetricPublisher(client(), { maxBufferedData: 100, now: () => now });
    publisher.enqueue(recorder.collect(INSTANCE));
    expect(await publisher.flush()).toBe(true);

    const calls = cloudWatch.commandCalls(PutMetricDataCommand);
    expect(calls).toHaveLength(1);
    const timestamp = new Date(now);
    const value = (name: string, unit: string, v: number) => bothSets(IMAGE).map((Dimensions) => ({ MetricName: name, Dimensions, Timestamp: timestamp, Unit: unit, Value: v }));
    expect(calls[0].args[0].input).toEqual({
      Namespace: 'EnclaveGPU',
      MetricData: [
        ...value('EncryptedBytesIn', 'Bytes', 1500),
        ...value('EncryptedBytesOut', 'Bytes', 700),
        ...value('KernelLaunches', 'Count', 1),
        ...value('AttestationFailures', 'Count', 1),
        ...value('ReplayRejected', 'Count', 1),
        ...bothSets(IMAGE).map((Dimensions) => ({ MetricName: 'EnclaveToHostLatency', Dimensions, Timestamp: timestamp, Unit: 'Milliseconds', Values: [1.23, 7], Counts: [2, 1] })),
        ...value('QueueDepth', 'Count', 2),
        ...value('GPUUtilization', 'Percent', 50),
      ],
    });
    expect(NAMESPACE).toBe('EnclaveGPU');
    // Every name and unit is the catalogue's.
    const catalogue = new Map<string, string>(Object.values(RUNTIME_METRICS).map((m) => [m.name, m.unit]));
    for (const datum of sentData()) expect(catalogue.get(datum.MetricName!)).toBe(datum.Unit);
  });

  it('keeps reporting an idle image with a live session as QueueDepth 0 and GPUUtilization 0', () => {
    let now = 0;
    const recorder = new MetricRecorder(() => now);
    recorder.sessionOpened(IMAGE);
    now = 60_000;
    recorder.collect(INSTANCE);
    now = 120_000;
    expect(recorder.collect(INSTANCE).map((d) => [d.MetricName, d.Value])).toEqual([['QueueDepth', 0], ['QueueDepth', 0], ['GPUUtilization', 0], ['GPUUtilization', 0]]);
    recorder.sessionClosed(IMAGE);
    now = 180_000;
    recorder.collect(INSTANCE);
    now = 240_000;
    expect(recorder.collect(INSTANCE)).toEqual([]);
  });

  it('reports every served image\'s QueueDepth and GPUUtilization every interval, 0 while idle, with no session ever', () => {
    let now = 0;
    const recorder = new MetricRecorder(() => now, [IMAGE]);
    for (const end of [60_000, 120_000]) {
      now = end;
      expect(recorder.collect(INSTANCE).map((d) => [d.MetricName, d.Value, d.Dimensions!.length])).toEqual([
        ['QueueDepth', 0, 2], ['QueueDepth', 0, 1], ['GPUUtilization', 0, 2], ['GPUUtilization', 0, 1],
      ]);
    }
  });

  it('splits a latency distribution into data of at most 150 values', () => {
    let now = 0;
    const recorder = new MetricRecorder(() => now);
    for (let i = 1; i <= 400; i++) recorder.operation(IMAGE, i, 0, undefined);
    recorder.operation(IMAGE, 400, 0, undefined);
    now = 1000;
    const latency = recorder.collect(INSTANCE).filter((d) => d.MetricName === 'EnclaveToHostLatency');
    expect(latency.map((d) => d.Values!.length)).toEqual([150, 150, 150, 150, 100, 100]);
    expect(latency.every((d) => d.Values!.length <= MAX_VALUES_PER_DISTRIBUTION && d.Values!.length === d.Counts!.length)).toBe(true);
    const perSet = latency.filter((d) => d.Dimensions!.length === 1);
    expect(perSet.flatMap((d) => d.Values)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    expect(perSet.flatMap((d) => d.Counts).reduce((a, b) => a! + b!, 0)).toBe(401);
  });

  it('sends at most 1000 data per call, in order', async () => {
    cloudWatch.on(PutMetricDataCommand).resolves({});
    const publisher = new MetricPublisher(client(), { maxBufferedData: 10_000 });
    const data = Array.from({ length: 2500 }, (_, i) => ({ MetricName: 'KernelLaunches', Value: i, Unit: 'Count' as const }));
    publisher.enqueue(data);
    expect(await publisher.flush()).toBe(true);
    const calls = cloudWatch.commandCalls(PutMetricDataCommand);
    expect(calls.map((call) => call.args[0].input.MetricData!.length)).toEqual([1000, 1000, 500]);
    expect(sentData().map((d) => d.Value)).toEqual(data.map((d) => d.Value));
    expect(publisher.sent).toBe(2500);
    expect(publisher.buffered).toBe(0);
  });

  it('keeps requests of large distributions well under the 1 MB request limit', async () => {
    cloudWatch.on(PutMetricDataCommand).resolves({});
    const publisher = new MetricPublisher(client(), { maxBufferedData: 10_000 });
    const values = Array.from({ length: 150 }, (_, i) => 1000.123 + i);
    publisher.enqueue(Array.from({ length: 1000 }, () => ({ MetricName: 'EnclaveToHostLatency', Dimensions: bothSets(IMAGE)[0], Unit: 'Milliseconds' as const, Values: values, Counts: values.map(() => 1) })));
    await publisher.flush();
    const calls = cloudWatch.commandCalls(PutMetricDataCommand);
    expect(calls.length).toBeGreaterThan(1);
    for (const call of calls) {
      expect(call.args[0].input.MetricData!.length).toBeLessThanOrEqual(MAX_DATA_PER_CALL);
      expect(JSON.stringify(call.args[0].input).length).toBeLessThan(350 * 1024);
    }
    expect(sentData()).toHaveLength(1000);
  });

  it('buffers while CloudWatch is unreachable, drops the oldest beyond the bound, and sends the rest once it is back', async () => {
    cloudWatch.on(PutMetricDataCommand).rejects(Object.assign(new Error('connect ETIMEDOUT'), { name: 'TimeoutError' }));
    const lines: string[] = [];
    const publisher = new MetricPublisher(client(), { maxBufferedData: 50, log: (line) => lines.push(line) });
    const batch = (from: number) => Array.from({ length: 20 }, (_, i) => ({ MetricName: 'KernelLaunches', Value: from + i, Unit: 'Count' as const }));
    for (const from of [0, 20, 40, 60]) {
      publisher.enqueue(batch(from));
      expect(await publisher.flush()).toBe(false);
    }
    expect(publisher.buffered).toBe(50);
    expect(publisher.dropped).toBe(30);
    expect(lines.filter((line) => line.includes('PutMetricData failed'))).toHaveLength(1); // said once, not per flush
    expect(lines.some((line) => line.includes('dropped'))).toBe(true);

    cloudWatch.reset();
    cloudWatch.on(PutMetricDataCommand).resolves({});
    expect(await publisher.flush()).toBe(true);
    expect(sentData().map((d) => d.Value)).toEqual(Array.from({ length: 50 }, (_, i) => 30 + i));
    expect(publisher.buffered).toBe(0);
    expect(lines.at(-1)).toMatch(/works again/);
  });

  it('counts data enqueued while a call is out once: sent, dropped or still buffered', async () => {
    const lines: string[] = [];
    const publisher = new MetricPublisher(client(), { maxBufferedData: 3, log: (line) => lines.push(line) });
    const data = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ MetricName: 'KernelLaunches', Value: from + i, Unit: 'Count' as const }));
    // The first call is answered only after 2 more data were enqueued (buffer 3, 3 in the call).
    const midCall = (outcome: () => Promise<object>, from: number) => {
      let first = true;
      cloudWatch.reset();
      cloudWatch.on(PutMetricDataCommand).callsFake(async () => {
        if (!first) return {};
        first = false;
        publisher.enqueue(data(from, 2));
        return outcome();
      });
    };

    midCall(async () => ({}), 3);
    publisher.enqueue(data(0, 3));
    expect(await publisher.flush()).toBe(true);
    expect(sentData().map((d) => d.Value)).toEqual([0, 1, 2, 3, 4]); // nothing lost, nothing twice
    expect([publisher.sent, publisher.dropped, publisher.buffered]).toEqual([5, 0, 0]);
    expect(lines.some((line) => line.includes('dropped'))).toBe(false);

    // The call fails: its 3 data go back in front of the 2 new ones, and the oldest 2 no longer fit.
    midCall(async () => { throw Object.assign(new Error('connect ETIMEDOUT'), { name: 'TimeoutError' }); }, 8);
    publisher.enqueue(data(5, 3));
    expect(await publisher.flush()).toBe(false);
    expect([publisher.sent, publisher.dropped, publisher.buffered]).toEqual([5, 2, 3]);
    cloudWatch.reset();
    cloudWatch.on(PutMetricDataCommand).resolves({});
    expect(await publisher.flush()).toBe(true);
    expect(sentData().map((d) => d.Value)).toEqual([7, 8, 9]);
    expect(publisher.sent + publisher.dropped + publisher.buffered).toBe(10);
  });

  it('after a long outage, drops data outside CloudWatch\'s timestamp window instead of letting them block the fresh ones', async () => {
    const DAY = 86_400_000;
    let now = 1_700_000_000_000;
    let reachable = false;
    // CloudWatch as documented: the whole request is refused if one Timestamp is more than two weeks old or two hours ahead.
    cloudWatch.on(PutMetricDataCommand).callsFake(async (input: { MetricData: MetricDatum[] }) => {
      if (!reachable) throw Object.assign(new Error('connect ETIMEDOUT'), { name: 'TimeoutError' });
      input.MetricData.forEach((d, i) => {
        const t = d.Timestamp!.getTime();
        if (t < now - 14 * DAY || t > now + 2 * 3_600_000) {
          throw new InvalidParameterValueException({ message: `The parameter MetricData.member.${i + 1}.Timestamp must specify a time within the past two weeks.`, $metadata: { httpStatusCode: 400 } });
        }
      });
      return {};
    });
    const lines: string[] = [];
    const publisher = new MetricPublisher(client(), { maxBufferedData: 10_000, log: (line) => lines.push(line), now: () => now });
    const datum = (value: number, at: number) => ({ MetricName: 'KernelLaunches', Unit: 'Count' as const, Value: value, Timestamp: new Date(at) });
    publisher.enqueue([datum(1, now)]);
    expect(await publisher.flush()).toBe(false);

    now += 15 * DAY;
    reachable = true;
    cloudWatch.resetHistory();
    publisher.enqueue([datum(2, now), datum(3, now + 3 * 3_600_000)]); // a fresh datum, and one from a clock 3 hours ahead
    expect(await publisher.flush()).toBe(true);
    expect(cloudWatch.commandCalls(PutMetricDataCommand)).toHaveLength(1);
    expect(sentData().map((d) => d.Value)).toEqual([2]);
    expect([publisher.sent, publisher.dropped, publisher.buffered]).toEqual([1, 2, 0]);
    expect(lines.some((line) => /dropped 2 data outside/.test(line))).toBe(true);
  });

  it('drops a batch CloudWatch refuses as invalid, and logs each change of error once', async () => {
    let reachable = false;
    // A datum with both Value and Values is refused, and with it the whole request.
    cloudWatch.on(PutMetricDataCommand).callsFake(async (input: { MetricData: MetricDatum[] }) => {
      if (!reachable) throw Object.assign(new Error('connect ETIMEDOUT'), { name: 'TimeoutError' });
      if (input.MetricData.some((d) => d.Value !== undefined && d.Values !== undefined)) {
        throw new InvalidParameterCombinationException({ message: 'The parameters MetricData.member.2.Value and MetricData.member.2.Values are mutually exclusive.', $metadata: { httpStatusCode: 400 } });
      }
      return {};
    });
    const lines: string[] = [];
    const publisher = new MetricPublisher(client(), { maxBufferedData: 100, log: (line) => lines.push(line) });
    const good = (value: number) => ({ MetricName: 'KernelLaunches', Unit: 'Count' as const, Value: value });
    const bad = (value: number) => ({ MetricName: 'EnclaveToHostLatency', Unit: 'Milliseconds' as const, Value: value, Values: [value] });
    const failures = () => lines.filter((line) => /PutMetricData (failed|refused)/.test(line));

    publisher.enqueue([good(1)]);
    expect(await publisher.flush()).toBe(false);
    expect(await publisher.flush()).toBe(false);
    expect(failures()).toHaveLength(1);

    reachable = true;
    publisher.enqueue([bad(2)]);
    expect(await publisher.flush()).toBe(true); // the batch [1, 2] is refused and dropped
    expect([publisher.sent, publisher.dropped, publisher.buffered]).toEqual([0, 2, 0]);
    expect(failures()).toHaveLength(2);
    expect(failures()[1]).toMatch(/InvalidParameterCombination.*dropped 2 data/);

    publisher.enqueue([bad(3)]);
    expect(await publisher.flush()).toBe(true);
    expect(publisher.dropped).toBe(3);
    expect(failures()).toHaveLength(2); // the same error: not said again

    publisher.enqueue([good(4)]);
    expect(await publisher.flush()).toBe(true);
    expect(sentData().filter((d) => d.Values === undefined && d.Value === 4)).toHaveLength(1);
    expect([publisher.sent, publisher.dropped, publisher.buffered]).toEqual([1, 3, 0]);
    expect(lines.at(-1)).toMatch(/works again/);
  });
});

describe('metrics of a real run through SGS', () => {
  const nsm = SimulatedNsm.create();
  let harness: Harness | undefined;

  afterEach(async () => {
    await harness?.stop();
    harness = undefined;
  });

  it('counts ciphertext both ways, launches, replays and latencies, and flushes when draining', async () => {
    cloudWatch.on(PutMetricDataCommand).resolves({});
    harness = await Harness.start(nsm, {
      metrics: { enabled: true, region: 'us-east-1', instanceId: INSTANCE, flushIntervalMs: 3_600_000, maxBufferedData: 1000 },
    }, { cloudWatch: client() });
    const egp = await harness.session();
    let bytesIn = 0;
    const send = (frames: Buffer[]) => { bytesIn += frames.reduce((sum, f) => sum + f.length, 0); egp.send(frames); return frames; };
    send(egp.seal(1, { op: 'htod', buffer: 1, size: 5000 }, Buffer.alloc(5000, 1)));
    await egp.answer(1);
    const launchFrames = send(egp.seal(2, { op: 'launch', kernel: INCREMENT_KERNEL, args: new Map([['buffer', 1]]) }, undefined, INCREMENT_DIGEST));
    await egp.answer(2);
    send(egp.seal(3, { op: 'dtoh', buffer: 1 }));
    await egp.answer(3);
    send(launchFrames); // a replay
    await egp.expectError('REPLAY');
    await harness.sgs.drain();

    const data = sentData().filter((d) => d.Dimensions!.length === 1);
    const sum = (name: string) => data.filter((d) => d.MetricName === name).reduce((total, d) => total + (d.Value ?? 0), 0);
    expect(sum('EncryptedBytesIn')).toBe(bytesIn);
    expect(sum('EncryptedBytesOut')).toBe(egp.frameBytesReceived);
    expect(sum('KernelLaunches')).toBe(1);
    expect(sum('ReplayRejected')).toBe(1);
    const latency = data.filter((d) => d.MetricName === 'EnclaveToHostLatency');
    expect(latency.flatMap((d) => d.Counts!).reduce((a, b) => a + b, 0)).toBe(3);
    // The fake context reports its launch as GPU time (as a context on onnxruntime's CUDA provider does).
    expect(data.filter((d) => d.MetricName === 'GPUUtilization').some((d) => d.Value! > 0)).toBe(true);
    expect(data.some((d) => d.MetricName === 'QueueDepth')).toBe(true);
    expect(new Set(data.flatMap((d) => d.Dimensions!.map((dim) => dim.Value)))).toEqual(new Set([IMAGE_DIMENSION]));
  });
});
