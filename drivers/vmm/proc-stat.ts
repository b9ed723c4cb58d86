import { readFile } from 'node:fs/promises';
import { execa } from 'execa';

/**
 * What /proc says about a process: CPU time for the metrics sampler, liveness and
 * command line for the VMM driver (to tell our VMM from a recycled pid).
 */
export interface ProcCpu {
  /** utime + stime, in clock ticks. */
  ticks: number;
  /** One-letter state: R, S, D, Z, … */
  state: string;
}

/** Parses a /proc/PID/stat line. comm (field 2) may hold spaces and parentheses, so fields are counted after the last ')'. */
export function parseProcStat(text: string): ProcCpu {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error('malformed /proc stat line');
  const rest = text.slice(close + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime) || rest[0] === undefined) throw new Error('malformed /proc stat line');
  return { ticks: utime + stime, state: rest[0] };
}

export async function readProcCpu(pid: number): Promise<ProcCpu> {
  return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
}

/** True while the pid exists and is not a zombie (a zombie has exited; only its parent's reap is pending). */
export async function isProcessAlive(pid: number): Promise<boolean> {
  try {
    return (await readProcCpu(pid)).state !== 'Z';
  } catch {
    return false;
  }
}

/** The argv of a live process, or null when it is gone (or a zombie, whose cmdline is empty). */
export async function readCmdline(pid: number): Promise<string[] | null> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    if (raw === '') return null;
    return raw.replace(/\0$/, '').split('\0');
  } catch {
    return null;
  }
}

// USER_HZ is 100 on every mainstream Linux build; asked once anyway, 100 if getconf is missing.
let clockTicks: Promise<number> | undefined;

export function clockTicksPerSecond(): Promise<number> {
  clockTicks ??= execa('getconf', ['CLK_TCK'], { timeout: 2000, reject: false }).then((r) => {
    const n = Number(String(r.stdout).trim());
    return r.exitCode === 0 && Number.isInteger(n) && n > 0 ? n : 100;
  }, () => 100);
  return clockTicks;
}
