import { readFile } from 'node:fs/promises';
import { z } from 'zod';

const LocomoQa = z.array(
  z.object({
    sample_id: z.string(),
    qa: z.array(z.object({ question: z.string(), category: z.number() })),
  }),
);

export interface BenchQuestion {
  readonly userId: string;
  readonly question: string;
  readonly category: number;
}

/** The questions of a LoCoMo file, each with the user (sample) it is asked about. */
export async function locomoQuestions(path: string): Promise<BenchQuestion[]> {
  const samples = LocomoQa.parse(JSON.parse(await readFile(path, 'utf8')));
  return samples.flatMap((sample) =>
    sample.qa.map((qa) => ({ userId: sample.sample_id, question: qa.question, category: qa.category })),
  );
}
