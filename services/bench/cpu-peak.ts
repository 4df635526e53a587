import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';

/** The widest fp32 FMA/SIMD level a CPU's flags announce. */
export type SimdLevel = 'avx512f' | 'avx2+fma' | 'avx' | 'sse' | 'neon' | 'scalar';

/**
 * An int8 multiply-add instruction set: VNNI (4 int8 multiply-adds per 32-bit lane in one instruction), or
 * plain AVX2, where an int8 product takes two (vpmaddubsw to 16-bit pairs, vpmaddwd to 32-bit sums).
 */
export type Int8Level = 'avx512_vnni' | 'avx_vnni' | 'avx2';

/**
 * A theoretical peak: cores × clock × operations per cycle per core. An estimate, not a measurement: it
 * assumes two FMA units per core (true of recent Intel and AMD x86 cores; some AVX-512 parts have one), the
 * clock that /proc/cpuinfo shows (base or current, not turbo), and that every logical CPU is a core of its
 * own (with SMT, two logical CPUs share one core's FMA units).
 */
export interface CpuPeak {
  /** `model name` of the first processor, when known. */
  readonly model: string | null;
  /** Logical CPUs counted. */
  readonly cores: number;
  readonly mhz: number;
  readonly simd: SimdLevel;
  /** fp32 FLOPs per cycle per core: 2 FMA units × lanes × 2 (multiply and add). */
  readonly fp32FlopsPerCycle: number;
  /** cores × clock × fp32FlopsPerCycle, FLOP/s: the main figure the fractions of peak refer to. */
  readonly fp32PeakFlops: number;
  /** int8 ops (a multiply-add = 2) per cycle per core and the peak; null without VNNI or AVX2. */
  readonly int8: {
    readonly level: Int8Level;
    readonly opsPerCycle: number;
    readonly peakOps: number;
  } | null;
}

/** fp32 FLOPs per cycle per core for each level: 2 FMA units × fp32 lanes × 2 (or add + mul ports without FMA). */
export const fp32FlopsPerCycle: Readonly<Record<SimdLevel, number>> = {
  avx512f: 64, // 2 × 16 lanes × 2
  'avx2+fma': 32, // 2 × 8 lanes × 2
  avx: 16, // one 8-lane add + one 8-lane multiply per cycle
  sse: 8, // one 4-lane add + one 4-lane multiply per cycle
  neon: 16, // 2 × 4 lanes × 2 (ARM asimd)
  scalar: 2,
};

/**
 * int8 ops per cycle per core: with VNNI 2 units × (lanes of 32 bits × 4 int8 multiply-adds) × 2; with
 * AVX2 the 32 byte products of a vpmaddubsw need a vpmaddwd too, so two units complete one 256-bit
 * product of 32 multiply-adds per cycle (what onnxruntime's MLAS u8s8 kernels do without VNNI).
 */
export const int8OpsPerCycle: Readonly<Record<Int8Level, number>> = {
  avx512_vnni: 256, // 2 × 16 × 4 × 2
  avx_vnni: 128, // 2 × 8 × 4 × 2
  avx2: 64, // 2 units / 2 instructions × 32 multiply-adds × 2
};

/** The flags of the first processor in a /proc/cpuinfo text (`flags` on x86, `Features` on ARM). */
export function cpuFlags(cpuinfo: string): Set<string> {
  const match = /^(?:flags|Features)\s*:(.*)$/m.exec(cpuinfo);
  return new Set((match?.[1] ?? '').trim().split(/\s+/).filter(Boolean));
}

export function simdLevel(flags: ReadonlySet<string>): SimdLevel {
  if (flags.has('avx512f')) return 'avx512f';
  if (flags.has('avx2') && flags.has('fma')) return 'avx2+fma';
  if (flags.has('avx')) return 'avx';
  if (flags.has('sse') || flags.has('sse2')) return 'sse';
  if (flags.has('asimd')) return 'neon';
  return 'scalar';
}

export function int8Level(flags: ReadonlySet<string>): Int8Level | null {
  if (flags.has('avx512_vnni') && flags.has('avx512f')) return 'avx512_vnni';
  if (flags.has('avx_vnni') || flags.has('avx512_vnni')) return 'avx_vnni';
  if (flags.has('avx2')) return 'avx2';
  return null;
}

/**
 * The peak of a machine from its /proc/cpuinfo text (pure, for tests). Cores: `fallback.cores`, else the
 * number of `processor` entries; clock: the mean `cpu MHz` of the entries, else `fallback.mhz`, else the
 * GHz in the model name.
 */
export function cpuPeakFromCpuinfo(
  cpuinfo: string,
  fallback: { readonly cores?: number | undefined; readonly mhz?: number | undefined } = {},
): CpuPeak {
  const flags = cpuFlags(cpuinfo);
  const processors = [...cpuinfo.matchAll(/^processor\s*:/gm)].length;
  const cores = fallback.cores ?? Math.max(1, processors);
  const mhzValues = [...cpuinfo.matchAll(/^cpu MHz\s*:\s*([\d.]+)/gm)]
    .map((m) => Number(m[1]))
    .filter((v) => Number.isFinite(v) && v > 0);
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? null;
  const nominalGhz = model === null ? undefined : /([\d.]+)\s*GHz/i.exec(model)?.[1];
  const mhz =
    mhzValues.length > 0
      ? mhzValues.reduce((a, b) => a + b, 0) / mhzValues.length
      : fallback.mhz !== undefined && fallback.mhz > 0
        ? fallback.mhz
        : nominalGhz !== undefined
          ? Number(nominalGhz) * 1000
          : 0;
  const simd = simdLevel(flags);
  const perCycle = fp32FlopsPerCycle[simd];
  const int8 = int8Level(flags);
  return {
    model,
    cores,
    mhz: Math.round(mhz),
    simd,
    fp32FlopsPerCycle: perCycle,
    fp32PeakFlops: cores * mhz * 1e6 * perCycle,
    int8:
      int8 === null
        ? null
        : {
            level: int8,
            opsPerCycle: int8OpsPerCycle[int8],
            peakOps: cores * mhz * 1e6 * int8OpsPerCycle[int8],
          },
  };
}

/** The same peak for `cores` of the machine's cores (e.g. the threads a benchmark runs on). */
export function peakOnCores(peak: CpuPeak, cores: number): CpuPeak {
  const scale = cores / peak.cores;
  return {
    ...peak,
    cores,
    fp32PeakFlops: peak.fp32PeakFlops * scale,
    int8: peak.int8 === null ? null : { ...peak.int8, peakOps: peak.int8.peakOps * scale },
  };
}

/** This machine's peak: /proc/cpuinfo when there is one, `os.cpus()` for the clock otherwise. */
export function machineCpuPeak(): CpuPeak {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // Not Linux: only what every CPU of the architecture has (SSE2 on x86-64, NEON on arm64).
    const baseline = process.arch === 'x64' ? 'sse sse2' : process.arch === 'arm64' ? 'asimd' : '';
    cpuinfo = `flags\t: ${baseline}\n`;
  }
  const list = cpus();
  return cpuPeakFromCpuinfo(cpuinfo, {
    cores: Math.max(1, availableParallelism()),
    mhz: list[0]?.speed,
  });
}

/** One line saying how the peak was computed. */
export function describePeak(peak: CpuPeak): string {
  const gflops = (peak.fp32PeakFlops / 1e9).toFixed(1);
  const int8 =
    peak.int8 === null
      ? 'no int8 multiply-add instructions, so no separate int8 peak'
      : `int8 peak with ${peak.int8.level} ${(peak.int8.peakOps / 1e9).toFixed(0)} GOP/s (${peak.int8.opsPerCycle} ops/cycle)`;
  return `fp32 peak ${gflops} GFLOP/s = ${peak.cores} cores × ${(peak.mhz / 1000).toFixed(2)} GHz × ${peak.fp32FlopsPerCycle} FLOP/cycle (${peak.simd}); ${int8}`;
}
