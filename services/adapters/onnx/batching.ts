/**
 * Indexes of the texts of each session run: sorted by token length (stable), then cut so that each run's
 * padded size (rows × its longest length, the last one's in this order) stays within `maxTokens` and its
 * rows within `maxRows`. A text longer than `maxTokens` runs alone. Runs cost about their padded size (and
 * attention its square), so a fixed row count pads a batch of long texts to its longest for nothing and
 * holds rows × length² attention scores at once; a token budget keeps every run about the same size.
 * Results go back to input order (the caller's job).
 */
export function tokenBudgetBatches(
  lengths: readonly number[],
  limits: { readonly maxRows: number; readonly maxTokens: number },
): number[][] {
  const order = lengths.map((_, index) => index).sort((a, b) => (lengths[a] ?? 0) - (lengths[b] ?? 0));
  const batches: number[][] = [];
  let batch: number[] = [];
  for (const index of order) {
    // Sorted ascending: with this text the run pads to its length.
    const padded = (batch.length + 1) * Math.max(1, lengths[index] ?? 0);
    if (batch.length > 0 && (batch.length >= limits.maxRows || padded > limits.maxTokens)) {
      batches.push(batch);
      batch = [];
    }
    batch.push(index);
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}
