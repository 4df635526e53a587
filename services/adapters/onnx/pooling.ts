/**
 * Pooling of a transformer's token vectors into one vector per text, and L2 normalisation. Pure functions
 * over the flat row-major `[batch, seq, dims]` output of a session, so they test without a model.
 */

export type Pooling = 'cls' | 'mean';

/**
 * One vector per batch row. `mask` is the flat `[batch, seq]` attention mask (1 = real token, 0 = padding).
 * `mean` averages the hidden states of the masked-in tokens (padding never counts); `cls` takes position 0.
 * A row without any real token (all padding) pools to the zero vector.
 */
export function pool(
  kind: Pooling,
  hidden: Float32Array,
  mask: ArrayLike<number | bigint>,
  batch: number,
  seq: number,
  dims: number,
): Float32Array[] {
  if (hidden.length !== batch * seq * dims)
    throw new RangeError(`hidden has ${hidden.length} values, expected ${batch}×${seq}×${dims}`);
  if (mask.length !== batch * seq)
    throw new RangeError(`mask has ${mask.length} values, expected ${batch}×${seq}`);
  return kind === 'cls' ? clsPool(hidden, batch, seq, dims) : meanPool(hidden, mask, batch, seq, dims);
}

export function clsPool(hidden: Float32Array, batch: number, seq: number, dims: number): Float32Array[] {
  const out: Float32Array[] = [];
  for (let b = 0; b < batch; b++) {
    const start = b * seq * dims;
    out.push(hidden.slice(start, start + dims));
  }
  return out;
}

export function meanPool(
  hidden: Float32Array,
  mask: ArrayLike<number | bigint>,
  batch: number,
  seq: number,
  dims: number,
): Float32Array[] {
  const out: Float32Array[] = [];
  for (let b = 0; b < batch; b++) {
    // Accumulate in float64: long sequences of float32 sums lose precision.
    const sum = new Float64Array(dims);
    let count = 0;
    for (let t = 0; t < seq; t++) {
      if (Number(mask[b * seq + t]) === 0) continue;
      count++;
      const start = (b * seq + t) * dims;
      for (let d = 0; d < dims; d++) sum[d] = (sum[d] ?? 0) + (hidden[start + d] ?? 0);
    }
    const vector = new Float32Array(dims);
    if (count > 0) for (let d = 0; d < dims; d++) vector[d] = (sum[d] ?? 0) / count;
    out.push(vector);
  }
  return out;
}

/** Scales `vector` to unit L2 norm, in place, and returns it. The zero vector stays zero. */
export function l2Normalize(vector: Float32Array): Float32Array {
  let norm = 0;
  for (const value of vector) norm += value * value;
  if (norm === 0) return vector;
  const scale = 1 / Math.sqrt(norm);
  for (let i = 0; i < vector.length; i++) vector[i] = (vector[i] ?? 0) * scale;
  return vector;
}
