/**
 * `flush` control events whose `metadata.reason` is this do not flush anything: the segmenter passes an
 * empty segment on (the session stays open, its buffer untouched), so the summarizer tries again the
 * batches it deferred for the conversation (a tenant that was over its LLM budget).
 */
export const retryExtractionReason = 'retry-extraction';
