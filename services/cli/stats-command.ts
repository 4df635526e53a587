import { collectStats } from '../app/pipeline-stats.js';
import { commonOptions, parse } from './args.js';
import { openContext } from './context.js';

export const statsUsage = `lightmem stats [--json] [--data-dir D]
  Events in the log, memories (live and superseded), records pending per stage, the components that run
  (which extractor: extractive or the LLM's model and prompt), LLM calls and tokens per tenant and model
  (the cost ledger), dead letters.`;

export async function statsCommand(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, { ...commonOptions, json: { type: 'boolean' } });
  if (values['help'] === true) {
    console.log(statsUsage);
    return 0;
  }
  const { runtime } = await openContext(values, { logLevel: 'warn' });
  try {
    const c = runtime.components;
    const stats = await collectStats(
      runtime.eventLog,
      runtime.store,
      await runtime.lag(),
      {
        scorer: c.scorer.version,
        segmenter: c.segmenter.capability,
        extractor: c.extractor.version,
        embedder: c.embedder?.id ?? 'none (lexical search only)',
      },
      runtime.config.deadLetters,
      runtime.warnings,
    );
    const llm = await runtime.ledger.totals();
    if (values['json'] === true) {
      console.log(JSON.stringify({ ...stats, llm }));
      return 0;
    }
    console.log(`events     ${stats.events.appended} appended to the log`);
    console.log(`memories   ${stats.memories.live} live, ${stats.memories.superseded} superseded`);
    const sleep = stats.consolidation;
    console.log(
      `consolidation ${sleep.pending} memories of ${sleep.users} users not consolidated yet; ${sleep.ops} decisions logged`,
    );
    for (const stage of stats.stages)
      console.log(
        `stage      ${stage.stage.padEnd(11)} ${stage.processed} processed, ${stage.pending} pending`,
      );
    for (const [name, value] of Object.entries(stats.components)) console.log(`${name.padEnd(10)} ${value}`);
    for (const warning of stats.warnings) console.log(`off        ${warning}`);
    if (llm.length === 0) console.log('llm        no calls recorded');
    for (const row of llm)
      console.log(
        `llm        ${row.tenantId} ${row.model}: ${row.calls} calls (${row.failedCalls} failed, ${row.reusedAnswers} answers reused), ` +
          `${row.promptTokens} prompt + ${row.completionTokens} completion tokens`,
      );
    const dead = stats.deadLetters;
    const kept =
      dead.retained === null
        ? ''
        : `, ${dead.retained.records} kept (${dead.retained.bytes} bytes), ${dead.retained.pruned} deleted by retention`;
    console.log(
      `dead letters ${dead.count} written${kept}; cap ${dead.maxBytes} bytes, retention ${dead.retentionDays} days`,
    );
    for (const letter of stats.deadLetters.recent) {
      const where =
        letter.sourceLine === null
          ? `${letter.sourceTopic} ${letter.key}`
          : `${letter.sourceTopic}:${letter.sourceLine}`;
      console.log(`  [${letter.stage}] ${where}: ${letter.field ?? '-'}: ${letter.reason}`);
    }
    return 0;
  } finally {
    await runtime.close();
  }
}
