/**
 * Streaming readers for input files, plain or gzip (detected by its magic bytes, whatever the name):
 * - `loadJsonl`: one event per line, decoded with `decodeTurnInput`;
 * - `readJsonArray`: the elements of a top-level JSON array one at a time, so a dataset of hundreds of
 *   megabytes is never held whole in memory (used by the LoCoMo and LongMemEval loaders).
 *
 * Breaking out of any of these iterators early closes the file (the generators destroy their streams
 * in `finally`), so an early `break` leaves no open handle behind.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { InvalidInputError, LightmemError, errorMessage } from '../core/errors.js';
import { type InputItem, datasetFailure, decodeTurnInput, truncateUtf8 } from './turn-input.js';

const READ_CHUNK_BYTES = 1024 * 1024;

async function isGzip(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await handle.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

/** An opened input file as UTF-8 text chunks; call `close` when done (idempotent). */
export interface InputText {
  text: Readable;
  close(): void;
}

/** A failure to read the file itself (I/O, corrupt gzip): terminal for the whole file. */
function readError(path: string, error: unknown): unknown {
  if (error instanceof LightmemError) return error;
  return new InvalidInputError(`cannot read input file ${path}: ${errorMessage(error)}`, 'path', error);
}

/** Opens a plain or gzip file as a UTF-8 text stream. Throws InvalidInputError when it cannot be read. */
export async function openInputText(path: string): Promise<InputText> {
  let gzip: boolean;
  try {
    gzip = await isGzip(path);
  } catch (error) {
    throw readError(path, error);
  }
  const file = createReadStream(path, { highWaterMark: READ_CHUNK_BYTES });
  const text = gzip ? file.pipe(createGunzip({ chunkSize: 256 * 1024 })) : file;
  if (gzip) file.on('error', (error) => text.destroy(error)); // pipe() does not forward source errors
  text.setEncoding('utf8'); // the decoder keeps multi-byte characters split across chunks intact
  return {
    text,
    close() {
      text.destroy();
      file.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// JSON Lines

/**
 * Reads a jsonl file, one event per line (blank lines skipped). A line that is not JSON yields an error
 * with field `(line)`. `seq` defaults to the item's position in its (tenant, conversation): the number
 * of items seen before it, or one past the highest seq seen if that is larger.
 */
export async function* loadJsonl(
  path: string,
  defaults: { tenantId?: string | undefined },
): AsyncGenerator<InputItem> {
  const input = await openInputText(path);
  const lines = createInterface({ input: input.text, crlfDelay: Infinity });
  const nextSeq = new Map<string, number>();
  let line = 0;
  try {
    for await (const rawLine of lines) {
      line++;
      const text = line === 1 ? rawLine.replace(/^\uFEFF/, '') : rawLine;
      if (text.trim() === '') continue;
      const item = { line, label: `line ${line}`, raw: truncateUtf8(text) };
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        yield {
          ...item,
          result: {
            ok: false,
            error: { field: '(line)', message: `line ${line} is malformed JSON: ${errorMessage(error)}` },
          },
        };
        continue;
      }
      const key = conversationKey(value, defaults.tenantId);
      const result = decodeTurnInput(value, {
        tenantId: defaults.tenantId,
        seq: key === undefined ? undefined : (nextSeq.get(key) ?? 0),
      });
      if (result.ok && key !== undefined)
        nextSeq.set(key, Math.max((nextSeq.get(key) ?? 0) + 1, result.event.seq + 1));
      yield { ...item, result };
    }
  } catch (error) {
    throw readError(path, error);
  } finally {
    lines.close();
    input.close();
  }
}

function conversationKey(value: unknown, defaultTenant: string | undefined): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  const tenant = record['tenantId'] ?? defaultTenant;
  const conversation = record['conversationId'];
  return typeof tenant === 'string' && typeof conversation === 'string'
    ? `${tenant}\u0000${conversation}`
    : undefined;
}

// ---------------------------------------------------------------------------------------------------
// Top-level JSON arrays

export type JsonArrayElement =
  | { ok: true; index: number; text: string; value: unknown }
  /** `index` null: the file as a whole is bad (not an array, or truncated). */
  | { ok: false; index: number | null; text: string; message: string };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

const stringSpecial = /["\\]/g;

function isJsonWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09 || code === 0xfeff;
}

/**
 * Yields the elements of a file holding one top-level JSON array, parsing each element on its own: memory
 * stays at about one element, however large the file. A malformed element yields an error for its index
 * and the reader continues with the next; a file that is not an array (or is truncated) yields one error
 * with index null.
 */
export async function* readJsonArray(path: string): AsyncGenerator<JsonArrayElement> {
  const input = await openInputText(path);
  let state = 'before' as 'before' | 'array' | 'after';
  let depth = 0; // nesting inside the current element
  let inString = false;
  let escaped = false;
  let index = 0;
  let parts: string[] = [];
  const element = (text: string): JsonArrayElement => {
    try {
      return { ok: true, index, text, value: JSON.parse(text) };
    } catch (error) {
      return {
        ok: false,
        index,
        text,
        message: `element [${index}] is malformed JSON: ${errorMessage(error)}`,
      };
    }
  };
  try {
    for await (const chunk of input.text as AsyncIterable<string>) {
      let start = 0; // where the current element's text begins in this chunk
      for (let i = 0; i < chunk.length; i++) {
        if (inString) {
          // Jump to the next quote or backslash: most of a dataset is string content.
          if (escaped) {
            escaped = false;
            continue;
          }
          stringSpecial.lastIndex = i;
          const special = stringSpecial.exec(chunk);
          if (special === null) break;
          i = special.index;
          if (chunk.charCodeAt(i) === BACKSLASH) escaped = true;
          else inString = false;
          continue;
        }
        const code = chunk.charCodeAt(i);
        if (state === 'array') {
          if (code === QUOTE) inString = true;
          else if (code === OPEN_BRACE || code === OPEN_BRACKET) depth++;
          else if ((code === CLOSE_BRACE || code === CLOSE_BRACKET) && depth > 0) depth--;
          else if (depth === 0 && (code === COMMA || code === CLOSE_BRACKET)) {
            parts.push(chunk.slice(start, i));
            const text = parts.join('').trim();
            parts = [];
            start = i + 1;
            if (text !== '') {
              yield element(text);
              index++;
            } else if (code === COMMA || index > 0) {
              // `[,` or `,,` or `,]`; a bare `[]` is an empty array
              yield { ok: false, index, text: '', message: `element [${index}] is empty (stray comma)` };
              index++;
            }
            if (code === CLOSE_BRACKET) state = 'after';
          }
        } else if (!isJsonWhitespace(code)) {
          if (state === 'before' && code === OPEN_BRACKET) {
            state = 'array';
            start = i + 1;
          } else {
            const where =
              state === 'before'
                ? 'expected a JSON array at the top level'
                : 'unexpected text after the top-level array';
            yield {
              ok: false,
              index: null,
              text: truncateUtf8(chunk.slice(i, i + 200)),
              message: `${path}: ${where}`,
            };
            return;
          }
        }
      }
      if (state === 'array') parts.push(chunk.slice(start));
    }
    if (state !== 'after') {
      const message =
        state === 'before'
          ? 'the file is empty (expected a JSON array)'
          : 'the file ends inside the top-level array (truncated?)';
      yield { ok: false, index: null, text: truncateUtf8(parts.join('')), message: `${path}: ${message}` };
    }
  } catch (error) {
    throw readError(path, error);
  } finally {
    input.close();
  }
}

/**
 * The items of a dataset that is one JSON array of records (LoCoMo samples, LongMemEval questions),
 * streamed: each element is expanded by `expand`; a malformed element becomes one error item, whose raw
 * text goes through `redact` first (to keep gold labels out of dead letters).
 */
export async function* jsonArrayDatasetItems(
  path: string,
  expand: (value: unknown, index: number, text: string) => Iterable<InputItem>,
  redact: (text: string) => string = (text) => text,
): AsyncGenerator<InputItem> {
  for await (const element of readJsonArray(path)) {
    if (!element.ok) {
      const field = element.index === null ? '(file)' : `[${element.index}]`;
      yield datasetFailure(field, redact(element.text), field, element.message);
      continue;
    }
    yield* expand(element.value, element.index, element.text);
  }
}
