import { registry } from '../../services/telemetry/metrics.js';

/**
 * The sum of a metric's values in this process's registry whose labels include `labels`. `name` may be a
 * histogram's `_count` (or `_sum`) series: prom-client lists those as values of the histogram, each with
 * its series name.
 */
export async function metricTotal(
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find(
    (m) => name === m.name || name === `${m.name}_count` || name === `${m.name}_sum`,
  );
  if (metric === undefined) return 0;
  return metric.values
    .filter((v) => ((v as { metricName?: string }).metricName ?? metric.name) === name)
    .filter((v) => Object.entries(labels).every(([key, value]) => String(v.labels[key]) === value))
    .reduce((sum, v) => sum + v.value, 0);
}
