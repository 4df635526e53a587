import * as hfTokenizers from '@huggingface/tokenizers';

/**
 * The part of `@huggingface/tokenizers`' Tokenizer that the ONNX adapters use. The package's own .d.ts
 * re-exports with extensionless relative paths, which NodeNext resolution cannot follow (its types come
 * out unresolved), so the adapters see the class through this typed view instead.
 */
export interface HfEncoding {
  ids: number[];
  tokens: string[];
  attention_mask: number[];
  token_type_ids?: number[];
}

export interface HfTokenizer {
  encode(
    text: string,
    options?: {
      text_pair?: string | null;
      add_special_tokens?: boolean;
      return_token_type_ids?: boolean | null;
    },
  ): HfEncoding;
  decode(ids: readonly number[], options?: { skip_special_tokens?: boolean }): string;
  tokenize(text: string, options?: { add_special_tokens?: boolean }): string[];
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
}

type HfTokenizerConstructor = new (tokenizerJson: object, tokenizerConfig: object) => HfTokenizer;

const TokenizerClass = (hfTokenizers as unknown as { Tokenizer: HfTokenizerConstructor }).Tokenizer;

/** A tokenizer from the parsed contents of a `tokenizer.json` (Hugging Face tokenizers format). Offline. */
export function createTokenizer(tokenizerJson: object, tokenizerConfig: object = {}): HfTokenizer {
  return new TokenizerClass(tokenizerJson, tokenizerConfig);
}
