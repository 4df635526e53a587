/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), for tests: every line is a
 * `# HELP`, a `# TYPE` or a sample `name{label="value",…} value`; anything else throws. Samples of a
 * histogram (`_bucket`, `_sum`, `_count`) and a summary belong to the family their `# TYPE` names.
 */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  readonly type: string;
  readonly help: string;
  readonly samples: Sample[];
}

const nameRe = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const sampleRe = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/;
const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  labelRe.lastIndex = 0;
  while (labelRe.lastIndex < text.length) {
    const match = labelRe.exec(text);
    if (match === null) throw new Error(`bad labels in ${JSON.stringify(line)}`);
    labels[match[1] ?? ''] = (match[2] ?? '')
      .replace(/\\n/g, '\n')
      .replace(/\\"/g, '"')
      .replace(/\\\\/g, '\\');
  }
  return labels;
}

function parseValue(text: string, line: string): number {
  // As Go's ParseFloat, which Prometheus uses: the special values in any letter case.
  const special = text.toLowerCase();
  if (special === '+inf' || special === 'inf') return Infinity;
  if (special === '-inf') return -Infinity;
  if (special === 'nan') return NaN;
  const value = Number(text);
  if (Number.isNaN(value)) throw new Error(`bad value in ${JSON.stringify(line)}`);
  return value;
}

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, { type: string; help: string; samples: Sample[] }>();
  const family = (name: string) => {
    let found = families.get(name);
    if (found === undefined) {
      found = { type: 'untyped', help: '', samples: [] };
      families.set(name, found);
    }
    return found;
  };
  const owner = (sample: string): string => {
    if (families.has(sample)) return sample;
    for (const suffix of ['_bucket', '_sum', '_count']) {
      const base = sample.endsWith(suffix) ? sample.slice(0, -suffix.length) : null;
      if (base !== null && families.has(base)) return base;
    }
    return sample;
  };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) {
      const [, kind, name, ...rest] = line.split(' ');
      if (name === undefined || !nameRe.test(name))
        throw new Error(`bad metric name in ${JSON.stringify(line)}`);
      if (kind === 'TYPE') {
        const type = rest.join(' ');
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type)) {
          throw new Error(`bad type in ${JSON.stringify(line)}`);
        }
        family(name).type = type;
      } else family(name).help = rest.join(' ');
      continue;
    }
    if (line.startsWith('#')) continue;
    const match = sampleRe.exec(line);
    if (match === null) throw new Error(`not a Prometheus sample: ${JSON.stringify(line)}`);
    const name = match[1] ?? '';
    family(owner(name)).samples.push({
      name,
      labels: match[3] === undefined ? {} : parseLabels(match[3], line),
      value: parseValue(match[4] ?? '', line),
    });
  }
  return families;
}

/** The sum of a family's samples named `sample` whose labels include `labels`. */
export function sampleSum(
  families: Map<string, MetricFamily>,
  sample: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  let sum = 0;
  for (const family of families.values()) {
    for (const s of family.samples) {
      if (s.name !== sample) continue;
      if (Object.entries(labels).every(([key, value]) => s.labels[key] === value)) sum += s.value;
    }
  }
  return sum;
}
