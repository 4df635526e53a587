import { randomBytes } from 'node:crypto';
import { readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createSession, sessionOptions } from './model-folder.js';

/**
 * Sessions that skip graph optimization at start-up. Optimizing a model's graph (fusing attention, layer
 * norms, GELU) is most of what creating a session costs (~190 of ~220 ms for the int8 bge-small), and
 * every process that embeds a query pays it. The first session of a model version is created with the
 * fusions and saves the optimized graph beside the model; later ones load that graph with optimization
 * off: the same operators, so the same speed and the same vectors, in about half the start-up time.
 *
 * The saved graph is named after the model's sha256 and the onnxruntime version (an upgrade re-optimizes),
 * written aside and renamed (two processes may race: either file is whole), and removed when it no longer
 * loads. Level `extended`, not `all`: `all` adds layout changes tied to the CPU that ran them, and the
 * models folder may be shared between machines. An unwritable folder only costs the optimization.
 */

const prefix = '.lightmem-optimized-';

/** Where the optimized graph of this model version is kept. */
export function optimizedModelPath(modelPath: string, modelSha256: string): string {
  const version = ort.env.versions.node ?? ort.env.versions.common;
  return join(
    dirname(modelPath),
    `${prefix}${basename(modelPath, '.onnx')}-${modelSha256.slice(0, 16)}-ort${version}.onnx`,
  );
}

export async function createOptimizedSession(
  modelPath: string,
  modelSha256: string,
  threads: number,
): Promise<ort.InferenceSession> {
  const saved = optimizedModelPath(modelPath, modelSha256);
  try {
    return await ort.InferenceSession.create(saved, sessionOptions(threads, 'disabled'));
  } catch {
    // Not saved yet, or not loadable (a half-written file of a crashed writer, another onnxruntime):
    // optimize again below and replace it.
  }
  const temporary = `${saved}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelPath, {
      ...sessionOptions(threads, 'extended'),
      optimizedModelFilePath: temporary,
    });
  } catch {
    // Saving failed (a read-only or full models folder), or the model does not load: a plain session,
    // which also gives the typed error of a model that does not load.
    await rm(temporary, { force: true }).catch(() => undefined);
    return createSession(modelPath, modelPath, threads);
  }
  try {
    await rename(temporary, saved);
    await removeStale(modelPath, saved);
  } catch {
    await rm(temporary, { force: true }).catch(() => undefined);
  }
  return session;
}

/** Optimized graphs of other versions of this model (replaced file, older onnxruntime). */
async function removeStale(modelPath: string, keep: string): Promise<void> {
  const mine = `${prefix}${basename(modelPath, '.onnx')}-`;
  for (const name of await readdir(dirname(modelPath))) {
    if (name.startsWith(mine) && name.endsWith('.onnx') && name !== basename(keep))
      await rm(join(dirname(modelPath), name), { force: true });
  }
}
