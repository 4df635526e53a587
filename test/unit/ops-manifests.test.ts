import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { registry } from '../../services/telemetry/metrics.js';
import { repoRoot } from '../support/cli.js';

/**
 * The Grafana dashboard and the Prometheus alert rules in infra/manifests/ name only metrics that exist,
 * and the Kubernetes manifests probe the endpoints the processes serve.
 */

const manifests = join(repoRoot, 'infra', 'manifests');

/** Every series name the registry exposes (a histogram's _bucket, _sum and _count included). */
async function exposedSeries(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    // At run time the type is prom-client's string ('histogram'), not its declared enum.
    if ((metric.type as unknown) === 'histogram')
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
  }
  return names;
}

/** The metric names a PromQL expression uses (ours start with lightmem_; `up` is Prometheus's own). */
function metricsOf(expr: string): string[] {
  return [...expr.matchAll(/\b(lightmem_[a-z0-9_]+|up)\b(?=\s*[{[(,\s)]|$)/g)].map((m) => m[1] ?? '');
}

describe('ops manifests', () => {
  it('the dashboard is valid JSON and every metric its panels query exists', async () => {
    const dashboard = JSON.parse(
      readFileSync(join(manifests, 'grafana', 'lightmem-dashboard.json'), 'utf8'),
    ) as {
      uid: string;
      panels: { title: string; targets: { expr: string }[] }[];
      templating: { list: { name: string; query?: unknown }[] };
    };
    assert.equal(dashboard.uid, 'lightmem-stream');
    const series = await exposedSeries();
    const exprs = [
      ...dashboard.panels.flatMap((panel) => panel.targets.map((t) => t.expr)),
      ...dashboard.templating.list.flatMap((v) =>
        typeof v.query === 'string' && v.query.includes('(') ? [v.query] : [],
      ),
    ];
    assert.ok(exprs.length >= 15);
    for (const expr of exprs) {
      const used = metricsOf(expr);
      assert.ok(used.length > 0, `no metric in ${expr}`);
      for (const name of used) assert.ok(series.has(name), `${name} (in ${expr}) is not exposed`);
    }
  });

  it('the alert rules parse and every metric they name exists', async () => {
    const rules = parseYaml(readFileSync(join(manifests, 'prometheus', 'lightmem-alerts.yaml'), 'utf8')) as {
      groups: { name: string; rules: { alert: string; expr: string; labels: { severity: string } }[] }[];
    };
    const series = await exposedSeries();
    const alerts = rules.groups.flatMap((group) => group.rules);
    assert.ok(alerts.length >= 8);
    for (const rule of alerts) {
      assert.match(rule.alert, /^Lightmem[A-Za-z]+$/);
      assert.ok(['critical', 'warning', 'info'].includes(rule.labels.severity), rule.alert);
      for (const name of metricsOf(rule.expr)) {
        if (name === 'up') continue;
        assert.ok(series.has(name), `${name} (alert ${rule.alert}) is not exposed`);
      }
    }
    // docs/operations.md says what each alert means.
    const operations = readFileSync(join(repoRoot, 'docs', 'operations.md'), 'utf8');
    for (const rule of alerts)
      assert.ok(operations.includes(rule.alert), `${rule.alert} is not explained in docs/operations.md`);
  });

  it('every stage service and the API are probed on the endpoints they serve', () => {
    const files = [
      '10-compressor',
      '11-segmenter',
      '12-summarizer',
      '13-indexer',
      '14-applier',
      '15-consolidator',
      '20-api',
    ];
    for (const file of files) {
      const documents = parseAllDocuments(readFileSync(join(manifests, 'k8s', `${file}.yaml`), 'utf8')).map(
        (d) =>
          d.toJS() as {
            kind: string;
            spec: {
              template?: {
                metadata: { annotations?: Record<string, string> };
                spec: {
                  containers: {
                    readinessProbe?: { httpGet?: { path: string } };
                    livenessProbe?: { httpGet?: { path: string } };
                  }[];
                };
              };
            };
          },
      );
      const workload = documents.find((d) => d.kind === 'StatefulSet' || d.kind === 'Deployment');
      assert.ok(workload?.spec.template !== undefined, file);
      const [container] = workload.spec.template.spec.containers;
      assert.equal(container?.readinessProbe?.httpGet?.path, '/readyz', file);
      assert.equal(container?.livenessProbe?.httpGet?.path, '/livez', file);
      assert.equal(workload.spec.template.metadata.annotations?.['prometheus.io/path'], '/metrics', file);
    }
  });
});
