/**
 * `flush` control events whose `metadata.reason` is this do not flush anything: the segmenter passes an
 * empty segment on (the session stays open, its buffer untouched), so the summarizer tries again the
 * batches it deferred for the conversation (a tenant that was over its LLM budget).
 */
export const retryExtractionReason = 'retry-extraction';

/**
 * Like `retryExtractionReason`, passed on as an empty segment; the summarizer also extracts the
 * conversation's buffer (batches that span sessions, after `pipeline.idleFlushMs` of silence).
 */
export const flushStmReason = 'flush-stm';

/** Control events that only nudge the summarizer: the segmenter passes them on and flushes nothing. */
export const summarizerNudges: readonly string[] = [retryExtractionReason, flushStmReason];
