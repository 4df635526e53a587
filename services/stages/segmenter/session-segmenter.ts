import type { Boundary, Segmenter } from '../../core/ports/segmenter.js';

/** With no embedder installed there is no topic signal: segments end at session ends and full buffers. */
export class SessionSegmenter implements Segmenter {
  readonly version = 'session-v1';
  readonly capability = 'session boundaries only (no embedder installed: topic segmentation is off)';

  boundaries(): Promise<Boundary[]> {
    return Promise.resolve([]);
  }
}
