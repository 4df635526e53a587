/**
 * LoCoMo gold evidence: the `evidence` list of a QA item names the dialogue turns (`dia_id`s such as
 * `D1:3`, session 1, turn 3) that hold the answer. A few strings are malformed: several ids in one string
 * (`"D8:6; D9:17"`), a stray colon (`"D:11:26"`), a lone `"D"`, spaces (`"D 4:17"`), ids of turns the
 * conversation does not have. This parser recovers every id it can, in the normal form `D<session>:<turn>`,
 * and says what it dropped, so the benchmark can count it instead of silently scoring against it.
 */

export interface ParsedEvidence {
  /** Gold turn ids, deduplicated, in order of appearance; only ids of turns the sample has when known. */
  readonly ids: string[];
  /** Ids that were well formed but name no turn of the sample (normal form). */
  readonly unknown: string[];
  /** Evidence text that holds no id (trimmed fragments, e.g. `"D"`). */
  readonly unparseable: string[];
}

/**
 * One id: `D`, an optional stray colon, the session number, a separator (colon, or a space, dot or dash
 * where the colon was lost), the turn number. Numbers lose leading zeros (`D30:05` is `D30:5`).
 */
const evidenceId = /D\s*:?\s*(\d+)\s*(?::|[\s.-])\s*(\d+)/gi;
const separators = /^[\s;,|/]*$/;

/** The normal form of a turn id, or undefined when the text is not one id. */
export function normalizeTurnId(text: string): string | undefined {
  const matches = [...text.matchAll(evidenceId)];
  const [match] = matches;
  if (matches.length !== 1 || match === undefined) return undefined;
  if (!separators.test(text.replace(match[0], ''))) return undefined;
  return `D${Number(match[1])}:${Number(match[2])}`;
}

/**
 * Parses the evidence list of one question. `turnIds` are the sample's own `dia_id`s: ids are matched to
 * them in normal form and returned as the sample spells them (the form memories carry as sources); ids
 * that match none are counted in `unknown`. Without `turnIds` every well-formed id is kept.
 */
export function parseEvidence(evidence: readonly unknown[], turnIds?: Iterable<string>): ParsedEvidence {
  const known = turnIds === undefined ? undefined : byNormalForm(turnIds);
  const ids: string[] = [];
  const unknown: string[] = [];
  const unparseable: string[] = [];
  for (const entry of evidence) {
    const text = typeof entry === 'string' ? entry : JSON.stringify(entry);
    let rest = text;
    for (const match of text.matchAll(evidenceId)) {
      rest = rest.replace(match[0], ' ');
      const id = `D${Number(match[1])}:${Number(match[2])}`;
      const resolved = known === undefined ? id : known.get(id);
      if (resolved === undefined) {
        if (!unknown.includes(id)) unknown.push(id);
      } else if (!ids.includes(resolved)) ids.push(resolved);
    }
    if (!separators.test(rest)) unparseable.push(rest.replace(/^[\s;,|/]+|[\s;,|/]+$/g, ''));
  }
  return { ids, unknown, unparseable };
}

function byNormalForm(turnIds: Iterable<string>): Map<string, string> {
  const map = new Map<string, string>();
  for (const id of turnIds) {
    const normal = normalizeTurnId(id);
    if (normal !== undefined && !map.has(normal)) map.set(normal, id);
  }
  return map;
}
