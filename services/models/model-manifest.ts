import { z } from 'zod';

/**
 * `lightmem-model.json`, written by `lightmem models fetch` into each model's folder
 * (`<models dir>/<name>/`) beside `model.onnx` and `tokenizer.json`. Loaders read everything they need
 * from it: nothing about a model is hard-coded at load time.
 */
export const ModelManifest = z.object({
  /** Registry name, e.g. bge-small-en-v1.5. */
  name: z.string().min(1),
  /**
   * `token-classifier`: an LLMLingua-2 compressor model (2 labels, output `logits`, label 1 = keep), put in
   * place by hand (`source: local`) and named by `models.compressor`.
   */
  kind: z.enum(['embedder', 'token-classifier']),
  /** Where the files came from: hf (Hugging Face hub), maven (Maven Central jar), local. */
  source: z.enum(['hf', 'maven', 'local']),
  /** The exact origin (URL or Maven coordinates) of each file. */
  origin: z.string(),
  /** Embedders: how token vectors become one text vector. */
  pooling: z.enum(['cls', 'mean']).optional(),
  normalize: z.boolean().default(true),
  /** Output dimension (embedders) or number of labels (token classifiers). */
  dims: z.number().int().positive(),
  /** Longest input in subword tokens, special tokens included. */
  maxLength: z.number().int().positive(),
  /**
   * Embedders: put before search queries when they are embedded (the model's query instruction). Absent
   * in manifests written before it existed: loaders then take the registry's entry of the same name.
   */
  queryPrefix: z.string().optional(),
  /** sha256 (hex) of every file in the folder but this one. */
  files: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/)),
  fetchedAt: z.string(),
});
export type ModelManifest = z.infer<typeof ModelManifest>;

export const manifestFileName = 'lightmem-model.json';
export const modelFileName = 'model.onnx';
export const tokenizerFileName = 'tokenizer.json';
