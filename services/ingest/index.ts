/**
 * Ingest: decoding events that come from outside (jsonl files, the HTTP API) and loading benchmark
 * datasets (LoCoMo, LongMemEval) as the same stream of `InputItem`s, good or bad, for the ingestion
 * step to append or dead-letter.
 */
import { InvalidInputError } from '../core/errors.js';
import { loadJsonl } from './jsonl.js';
import { loadLocomo } from './locomo.js';
import { loadLongMemEval } from './longmemeval.js';
import type { InputItem } from './turn-input.js';

export * from './turn-input.js';
export { loadJsonl, openInputText, readJsonArray, type InputText, type JsonArrayElement } from './jsonl.js';
export { loadLocomo, locomoSampleItems, parseLocomoDateTime } from './locomo.js';
export {
  loadLongMemEval,
  longMemEvalQuestionItems,
  longMemEvalSourceId,
  longMemEvalTurnId,
  parseLongMemEvalDate,
  withoutGoldLabels,
} from './longmemeval.js';

export const DatasetFormatValues = ['locomo', 'longmemeval', 'jsonl'] as const;
export type DatasetFormat = (typeof DatasetFormatValues)[number];

export function isDatasetFormat(value: string): value is DatasetFormat {
  return (DatasetFormatValues as readonly string[]).includes(value);
}

/**
 * The items of an input file, streamed. For the benchmark formats the tenant is a CLI option
 * (`default` when none is given); jsonl items name their tenant or take `defaults.tenantId`.
 * Opening the file happens on first iteration; a file that cannot be read rejects it.
 */
export function loadDataset(
  path: string,
  format: DatasetFormat,
  defaults: { tenantId?: string | undefined },
): AsyncIterable<InputItem> {
  switch (format) {
    case 'locomo':
      return loadLocomo(path, defaults);
    case 'longmemeval':
      return loadLongMemEval(path, defaults);
    case 'jsonl':
      return loadJsonl(path, defaults);
    default:
      throw new InvalidInputError(
        `format must be one of ${DatasetFormatValues.join(', ')} (got ${JSON.stringify(String(format))})`,
        'format',
      );
  }
}
