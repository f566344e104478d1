/**
 * CloudWatch metric data in the shapes PutMetricData takes, for the catalogue's runtime
 * metrics: every datum once per dimension set of RUNTIME_DIMENSION_SETS, distributions as
 * Values/Counts of at most MAX_VALUES_PER_DISTRIBUTION distinct values each.
 */
import type { Dimension, MetricDatum } from '@aws-sdk/client-cloudwatch';
import { DIMENSIONS, MetricDefinition, RUNTIME_DIMENSION_SETS } from '../../../../../lib/observability/metric-catalogue';

/** PutMetricData: at most 1000 metric data per call. */
export const MAX_DATA_PER_CALL = 1000;
/** PutMetricData: at most 150 distinct values in one datum's Values. */
export const MAX_VALUES_PER_DISTRIBUTION = 150;

/** The dimensions of one enclave image on one instance, one list per dimension set. */
export function runtimeDimensions(instanceId: string, enclaveImage: string): Dimension[][] {
  const values: Record<string, string> = { [DIMENSIONS.instanceId]: instanceId, [DIMENSIONS.enclaveImage]: enclaveImage };
  return RUNTIME_DIMENSION_SETS.map((set) => set.map((name) => ({ Name: name, Value: values[name] })));
}

/** One value, under each dimension set. */
export function valueData(metric: MetricDefinition, value: number, dimensionSets: Dimension[][], timestamp: Date): MetricDatum[] {
  return dimensionSets.map((dimensions) => ({ MetricName: metric.name, Dimensions: dimensions, Timestamp: timestamp, Unit: metric.unit, Value: value }));
}

/**
 * A distribution (value -> how often it occurred), under each dimension set, split into data
 * of at most MAX_VALUES_PER_DISTRIBUTION values (CloudWatch combines data of the same metric,
 * dimensions and time, so percentiles see every value).
 */
export function distributionData(metric: MetricDefinition, counts: ReadonlyMap<number, number>, dimensionSets: Dimension[][], timestamp: Date): MetricDatum[] {
  const entries = [...counts].sort(([a], [b]) => a - b);
  const data: MetricDatum[] = [];
  for (let start = 0; start < entries.length; start += MAX_VALUES_PER_DISTRIBUTION) {
    const slice = entries.slice(start, start + MAX_VALUES_PER_DISTRIBUTION);
    for (const dimensions of dimensionSets) {
      data.push({
        MetricName: metric.name,
        Dimensions: dimensions,
        Timestamp: timestamp,
        Unit: metric.unit,
        Values: slice.map(([value]) => value),
        Counts: slice.map(([, count]) => count),
      });
    }
  }
  return data;
}
