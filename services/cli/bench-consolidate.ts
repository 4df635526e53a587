/**
 * The `--consolidate` step of the recall benchmarks: who decides in each `--llm` mode, where the update
 * phase's cost comes from, and the files it writes.
 * - off: the runtime's own runner with the LLM-free policy (near-duplicates merged).
 * - dry-run: the same orchestration and activities over a DryRunDecider: the LLM policy's queues and
 *   targets, every request it would send rendered and counted, every case decided ignore.
 * - live: the runtime's own runner with the LLM policy; calls and tokens from the cost ledger.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { LightmemConfig, LightmemConfigInput } from '../core/config.js';
import type { Clock } from '../core/ports/clock.js';
import type { Logger } from '../core/ports/logger.js';
import type { EmbeddedRuntime } from '../runtime/embedded-runtime.js';
import {
  InProcessConsolidation,
  inProcessConsolidationOptions,
} from '../runtime/in-process-consolidation.js';
import { consolidationDeps, updatePrompt } from '../runtime/consolidation-setup.js';
import { updatePromptHash, updateRequest } from '../stages/consolidation/llm/llm-update-decider.js';
import type { ConsolidationSummary } from '../../workflows/consolidation/activity-types.js';
import type { Consolidator } from '../bench/consolidation-bench.js';
import { DryRunDecider } from '../bench/dry-run-decider.js';
import { costBetween, ledgerCosts } from '../bench/ledger-costs.js';
import type { LlmCost } from '../bench/llm-dry-run.js';
import type { LlmMode } from '../bench/recall-report.js';

/**
 * The configuration a `--consolidate` bench runs with: the scheduled consolidation is off (a run during
 * ingest would make "before" depend on timing; the bench consolidates when ingest is done), and the policy
 * follows `--llm`. The dry run's runtime keeps the LLM-free policy (its decider is built here, not there).
 */
export function consolidationOverrides(
  consolidate: boolean,
  mode: LlmMode,
): Pick<LightmemConfigInput, 'consolidation'> {
  if (!consolidate) return { consolidation: { enabled: false } };
  return { consolidation: { enabled: false, policy: mode === 'live' ? 'llm' : 'near-duplicate' } };
}

export interface ConsolidationStep {
  readonly consolidate: Consolidator;
  /** Records a case's decisions (`<out>/consolidation-decisions.jsonl`). */
  readonly onCase: (caseId: string, summary: ConsolidationSummary) => void;
  /** Closes the files; after it, `costOf` holds the update phase's cost per case user. */
  finish(): Promise<void>;
  costOf(userId: string): LlmCost;
  readonly files: Readonly<Record<string, string>>;
}

export interface ConsolidationStepOptions {
  readonly mode: LlmMode;
  readonly config: LightmemConfig;
  readonly out: string;
  readonly clock: Clock;
  readonly logger: Logger;
}

export async function consolidationStep(
  runtime: EmbeddedRuntime,
  options: ConsolidationStepOptions,
): Promise<ConsolidationStep> {
  const { mode, config, out } = options;
  const decisionsFile = join(out, 'consolidation-decisions.jsonl');
  const files: Record<string, string> = {
    consolidationDecisions: decisionsFile,
    retrievalAfter: join(out, 'retrieval-after.jsonl'),
  };
  const decisions = createWriteStream(decisionsFile);
  const onCase = (caseId: string, summary: ConsolidationSummary): void => {
    for (const decision of summary.decisions) decisions.write(`${JSON.stringify({ caseId, ...decision })}\n`);
  };
  const zero: LlmCost = { calls: 0, promptTokens: 0, completionTokens: 0 };

  if (mode === 'dry-run') {
    const requestsFile = join(out, 'consolidation-requests.jsonl');
    files['consolidationRequests'] = requestsFile;
    const requests = createWriteStream(requestsFile);
    const prompt = updatePrompt(config.consolidation.prompt);
    const settings = {
      prompt: prompt.text,
      maxTokens: config.consolidation.maxAnswerTokens,
      temperature: config.consolidation.temperature,
    };
    const promptHash = updatePromptHash(prompt.text);
    const decider = new DryRunDecider(
      `llm:${config.llm.model}@${promptHash}`,
      promptHash,
      (item) => updateRequest(item, settings).request,
      (rendered) =>
        requests.write(
          `${JSON.stringify({
            userId: rendered.userId,
            targetId: rendered.targetId,
            sources: rendered.sources,
            similarities: rendered.similarities.map((similarity) => Math.round(similarity * 1e4) / 1e4),
            promptTokens: rendered.promptTokens,
            messages: rendered.request.messages,
          })}\n`,
        ),
    );
    const runner = new InProcessConsolidation(
      consolidationDeps({
        config,
        store: runtime.store,
        log: runtime.eventLog,
        embedderId: runtime.components.embedder?.id ?? null,
        decider,
        clock: options.clock,
        logger: options.logger,
      }),
      inProcessConsolidationOptions(config, options.clock, options.logger),
    );
    return {
      // Not a dry run of the orchestration: the ignores are appended and the sources marked, so that a
      // user with more new memories than one run takes gets its later runs, as the LLM policy would.
      consolidate: (scope) => runner.run(scope, { dryRun: false }),
      onCase,
      finish: async () => {
        await Promise.all([close(decisions), close(requests)]);
      },
      costOf: (userId) => decider.costOf(userId),
      files,
    };
  }

  const ledgerBefore = mode === 'live' ? await ledgerCosts(runtime.ledger) : new Map<string, LlmCost>();
  let ledgerAfter = ledgerBefore;
  return {
    consolidate: (scope) => runtime.consolidate(scope, { dryRun: false }),
    onCase,
    finish: async () => {
      await close(decisions);
      if (mode === 'live') ledgerAfter = await ledgerCosts(runtime.ledger);
    },
    costOf: (userId) => (mode === 'live' ? costBetween(ledgerBefore, ledgerAfter, userId) : zero),
    files,
  };
}

function close(stream: WriteStream): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.once('error', reject);
    stream.end(() => resolve());
  });
}
