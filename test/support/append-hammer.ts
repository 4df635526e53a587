// A second process writing to an event log file: `node --import tsx append-hammer.ts <file> <writer> <batches> <size>`.
// Appends its batches as fast as it can (each append reads the topic's end, then writes) and prints
// {"appended": n}; exits 1 with the error (and its cause's code) on the first append that fails.
import { SqliteEventLog } from '../../services/adapters/sqlite/sqlite-event-log.js';
import { Topics, conversationKey } from '../../services/core/model/topics.js';
import { makeTurn } from './event-fixtures.js';
import { silentLogger } from './memory-logger.js';

const [file, writer, batches, size] = process.argv.slice(2);
if (file === undefined || writer === undefined)
  throw new Error('usage: append-hammer <file> <writer> <batches> <size>');
const log = SqliteEventLog.open(file, { logger: silentLogger, clock: { now: () => Date.now() } });
let appended = 0;
try {
  for (let b = 0; b < Number(batches); b++) {
    const records = Array.from({ length: Number(size) }, (_, i) => {
      const event = makeTurn(b * Number(size) + i, { conversationId: `conv-${writer}` });
      return { key: conversationKey(event), value: event, dedupKey: `${writer}/${event.turnId}` };
    });
    appended += (await log.append(Topics.raw, records)).appended;
  }
  console.log(JSON.stringify({ appended }));
} catch (error) {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const code = cause instanceof Error && 'code' in cause ? String(cause.code) : null;
  console.log(JSON.stringify({ appended, error: String(error), code }));
  process.exitCode = 1;
} finally {
  await log.close();
}
