/**
 * Everything written to stderr while `run` runs (the stderr logger's JSON lines, client libraries' own
 * output), kept from the test's output; written out after all when `run` fails, to tell why.
 */
export async function capturingStderr(run: () => Promise<void> | void): Promise<string> {
  const chunks: string[] = [];
  const original = process.stderr.write.bind(process.stderr);
  process.stderr.write = (chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  };
  try {
    await run();
  } catch (error) {
    process.stderr.write = original;
    process.stderr.write(chunks.join(''));
    throw error;
  } finally {
    process.stderr.write = original;
  }
  return chunks.join('');
}
