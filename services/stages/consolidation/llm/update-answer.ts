import { z } from 'zod';
import type { FinishReason, JsonSchemaFormat } from '../../../core/ports/chat-model.js';

export const updateActions = ['update', 'supersede', 'ignore'] as const;
export type UpdateAction = (typeof updateActions)[number];

/**
 * The answer's shape, sent as structured output where the endpoint takes it. OpenAI's strict mode wants
 * every property required, so `memory` and `by` are there always, null when the action has none. `reason`
 * comes first: a model that writes in order says why before it decides.
 */
export const updateSchema: JsonSchemaFormat = {
  name: 'memory_update',
  schema: {
    type: 'object',
    properties: {
      reason: { type: 'string' },
      action: { type: 'string', enum: [...updateActions] },
      memory: { type: ['string', 'null'] },
      by: { type: ['string', 'null'] },
    },
    required: ['reason', 'action', 'memory', 'by'],
    additionalProperties: false,
  },
};

/** Why an answer cannot be used (the codes a DecisionProblem carries). */
export type AnswerProblemCode = 'malformed_answer' | 'unknown_source' | 'truncated_answer';

/** A usable answer; `by` is the 1-based number of the source (`S<by>`). */
export type UpdateAnswer =
  | { readonly action: 'update'; readonly memory: string; readonly reason: string }
  | { readonly action: 'supersede'; readonly by: number; readonly reason: string }
  | { readonly action: 'ignore'; readonly reason: string };

export type ParsedUpdate =
  | { readonly ok: true; readonly answer: UpdateAnswer }
  | { readonly ok: false; readonly code: AnswerProblemCode; readonly error: string };

/** The shape as the repair request and parse errors describe it. */
export const updateShape =
  '{"reason": "<one short sentence>", "action": "update" | "supersede" | "ignore", "memory": <the rewritten target for update, else null>, "by": <"S1", "S2", … for supersede, else null>}';

/** Lenient on form (missing nulls, case, blanks), strict on content (checked in parseUpdateAnswer). */
const Answer = z.looseObject({
  reason: z.string().nullish(),
  action: z.string(),
  memory: z.string().nullish(),
  by: z.union([z.string(), z.number()]).nullish(),
});

const noReason = '(no reason given)';

/**
 * Decodes an update answer for a case with `sourceCount` sources (`S1`…`S<sourceCount>`). Not ok: cut at
 * max_tokens (`truncated_answer`); not JSON, not the shape, an unknown action, an update without a memory,
 * a supersede without `by` (`malformed_answer`); a supersede naming anything but one of the sources
 * (`unknown_source`). The error is worded to be quoted back in a repair request.
 */
export function parseUpdateAnswer(
  text: string,
  finishReason: FinishReason,
  sourceCount: number,
): ParsedUpdate {
  if (finishReason === 'length') {
    return {
      ok: false,
      code: 'truncated_answer',
      error: 'the answer was cut off at the token limit before the JSON was complete',
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(jsonPart(text));
  } catch (error) {
    return malformed(`the answer is not valid JSON (${(error as Error).message})`);
  }
  const decoded = Answer.safeParse(json);
  if (!decoded.success) {
    const issue = decoded.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? '' : ` at ${issue.path.join('.')}`;
    return malformed(`the answer does not match ${updateShape}${where}: ${issue?.message ?? 'invalid'}`);
  }
  const raw = decoded.data;
  const action = raw.action.trim().toLowerCase();
  const reason = raw.reason?.trim() || noReason;
  switch (action) {
    case 'ignore':
      return { ok: true, answer: { action, reason } };
    case 'update': {
      const memory = raw.memory?.trim() ?? '';
      if (memory === '') return malformed('the action is update but "memory" is empty or missing');
      if (isPlaceholder(memory))
        return malformed(
          `"memory" is a placeholder (${JSON.stringify(memory)}), not the rewritten target memory`,
        );
      return { ok: true, answer: { action, memory, reason } };
    }
    case 'supersede': {
      const by = raw.by === null || raw.by === undefined ? '' : String(raw.by).trim();
      if (by === '') return malformed('the action is supersede but "by" is empty or missing');
      const match = /^S(\d+)$/i.exec(by);
      const number = match === null ? NaN : Number(match[1]);
      if (!(number >= 1 && number <= sourceCount)) {
        const ids = sourceCount === 1 ? 'S1' : `S1 to S${sourceCount}`;
        return {
          ok: false,
          code: 'unknown_source',
          error: `"by" names ${JSON.stringify(by)}, which is not one of the newer memories (${ids})`,
        };
      }
      return { ok: true, answer: { action, by: number, reason } };
    }
    default:
      return malformed(
        `the action ${JSON.stringify(raw.action)} is not one of ${updateActions.map((a) => `"${a}"`).join(', ')}`,
      );
  }
}

function malformed(error: string): ParsedUpdate {
  return { ok: false, code: 'malformed_answer', error };
}

/** A memory that only names the slot it fills (`<memory>`, `...`): a model copying the shape it was shown. */
function isPlaceholder(text: string): boolean {
  const bare = text.trim().toLowerCase();
  return (
    /^<[^>]*>$/.test(bare) ||
    /^[.…\s]*$/.test(bare) ||
    ['memory', 'string', 'the memory', 'null'].includes(bare)
  );
}

/** The JSON in an answer: without a Markdown fence or prose around the outermost object. */
function jsonPart(text: string): string {
  const fenced = /```(?:json)?\s*([\s\S]*?)```/i.exec(text);
  const body = (fenced?.[1] ?? text).trim();
  if (body.startsWith('{')) return body;
  const start = body.indexOf('{');
  const end = body.lastIndexOf('}');
  return start >= 0 && end > start ? body.slice(start, end + 1) : body;
}
