/**
 * A line chart of recall by rank cut-off k, one line per category (and overall), as a standalone SVG
 * written by hand: no charting dependency, opens in any browser and renders on GitHub.
 */

export interface RecallSeries {
  readonly label: string;
  /** Recall in [0, 1] at each k of the chart, in the same order. */
  readonly values: readonly number[];
  /** Drawn thicker (the overall line). */
  readonly emphasis?: boolean | undefined;
}

export interface RecallChart {
  readonly title: string;
  readonly ks: readonly number[];
  readonly series: readonly RecallSeries[];
  /** Y-axis label; default `evidence recall R@k`. */
  readonly yLabel?: string | undefined;
}

const palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const width = 680;
const height = 420;
const margin = { left: 64, right: 190, top: 48, bottom: 56 };

export function recallChartSvg(chart: RecallChart): string {
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const logs = chart.ks.map((k) => Math.log(Math.max(k, 1)));
  const [minLog, maxLog] = [Math.min(...logs), Math.max(...logs)];
  const x = (i: number): number =>
    margin.left +
    (maxLog === minLog ? plotWidth / 2 : (((logs[i] ?? minLog) - minLog) / (maxLog - minLog)) * plotWidth);
  const y = (value: number): number => margin.top + (1 - clamp(value)) * plotHeight;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(chart.title)}</text>`,
  ];
  for (let tick = 0; tick <= 10; tick += 2) {
    const value = tick / 10;
    parts.push(
      `<line x1="${margin.left}" y1="${fmt(y(value))}" x2="${margin.left + plotWidth}" y2="${fmt(y(value))}" stroke="#dddddd"/>`,
      `<text x="${margin.left - 8}" y="${fmt(y(value) + 4)}" text-anchor="end">${value.toFixed(1)}</text>`,
    );
  }
  chart.ks.forEach((k, i) => {
    parts.push(
      `<line x1="${fmt(x(i))}" y1="${margin.top}" x2="${fmt(x(i))}" y2="${margin.top + plotHeight}" stroke="#eeeeee"/>`,
      `<text x="${fmt(x(i))}" y="${margin.top + plotHeight + 18}" text-anchor="middle">${k}</text>`,
    );
  });
  parts.push(
    `<rect x="${margin.left}" y="${margin.top}" width="${plotWidth}" height="${plotHeight}" fill="none" stroke="#444444"/>`,
    `<text x="${margin.left + plotWidth / 2}" y="${height - 14}" text-anchor="middle">k (memories retrieved, log scale)</text>`,
    `<text transform="translate(18 ${margin.top + plotHeight / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel ?? 'evidence recall R@k')}</text>`,
  );
  chart.series.forEach((series, s) => {
    const color = series.emphasis === true ? '#000000' : (palette[s % palette.length] ?? '#000000');
    const stroke = series.emphasis === true ? 3 : 2;
    const points = series.values.map((value, i) => `${fmt(x(i))},${fmt(y(value))}`).join(' ');
    parts.push(
      `<polyline points="${points}" fill="none" stroke="${color}" stroke-width="${stroke}"${series.emphasis === true ? '' : ' stroke-opacity="0.9"'}/>`,
    );
    series.values.forEach((value, i) => {
      parts.push(
        `<circle cx="${fmt(x(i))}" cy="${fmt(y(value))}" r="3.5" fill="${color}"><title>${escapeXml(series.label)} R@${chart.ks[i] ?? ''} = ${value.toFixed(3)}</title></circle>`,
      );
    });
    const legendY = margin.top + 8 + s * 20;
    const legendX = margin.left + plotWidth + 16;
    parts.push(
      `<line x1="${legendX}" y1="${legendY}" x2="${legendX + 22}" y2="${legendY}" stroke="${color}" stroke-width="${stroke}"/>`,
      `<text x="${legendX + 28}" y="${legendY + 4}">${escapeXml(series.label)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function clamp(value: number): number {
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0;
}

function fmt(value: number): string {
  return value.toFixed(1);
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
