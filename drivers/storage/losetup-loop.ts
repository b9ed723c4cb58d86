import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import { CommandError, cleanupSignal, run } from './exec.ts';
import { KeyedLock } from './keyed-lock.ts';
import { assertHostPath, assertLoopDevice } from './names.ts';
import type { LoopDriver } from './storage.ts';

/** One loop device as losetup reports it. */
export interface LoopAttachment {
  device: string;
  /** Backing file, without the " (deleted)" suffix losetup adds for unlinked files. */
  backingFile: string;
  readOnly: boolean;
  autoclear: boolean;
  /** The backing file was unlinked while attached. */
  deleted: boolean;
}

export interface LosetupOptions {
  losetupPath?: string;
  blockdevPath?: string;
  timeoutMs?: number;
  /** List loops from sysfs (default) or always through `losetup --list --json`. */
  listFrom?: 'sysfs' | 'losetup';
}

const LoopListing = (raw: string): LoopAttachment[] => {
  if (raw.trim() === '') return [];
  const parsed = JSON.parse(raw) as { loopdevices?: unknown };
  if (!Array.isArray(parsed.loopdevices)) throw new Error('losetup --json: no loopdevices array');
  return parsed.loopdevices.map((d: Record<string, unknown>) => {
    const back = typeof d['back-file'] === 'string' ? d['back-file'] : '';
    const deleted = back.endsWith(' (deleted)');
    return {
      device: String(d.name),
      backingFile: deleted ? back.slice(0, -' (deleted)'.length) : back,
      readOnly: d.ro === true || d.ro === '1' || d.ro === 1,
      autoclear: d.autoclear === true || d.autoclear === '1' || d.autoclear === 1,
      deleted,
    };
  });
};

/** "No such device or address" (ENXIO): the loop was already detached. */
const GONE = /No such device or address|No such device\b|does not exist/i;

/**
 * LoopDriver on util-linux losetup. Read-only attachments for origins, reused when
 * the same file is already attached read-only; read-write ones for CoW files.
 * Attaches of one file are serialised in-process so two callers never both attach it.
 */
export class LosetupLoopDriver implements LoopDriver {
  private readonly losetup: string;
  private readonly blockdev: string;
  private readonly timeoutMs: number;
  private readonly listFrom: 'sysfs' | 'losetup';
  private readonly locks = new KeyedLock();

  constructor(opts: LosetupOptions = {}) {
    this.losetup = opts.losetupPath ?? 'losetup';
    this.blockdev = opts.blockdevPath ?? 'blockdev';
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.listFrom = opts.listFrom ?? 'sysfs';
  }

  attach(imagePath: string, opts: CallOpts): Promise<string> {
    return this.attachFile(imagePath, true, opts);
  }

  /** Read-write attachment (a CoW file under a dm snapshot); reuses an existing read-write one. */
  attachReadWrite(filePath: string, opts: CallOpts): Promise<string> {
    return this.attachFile(filePath, false, opts);
  }

  async detach(device: string, imagePath: string, opts: CallOpts): Promise<void> {
    assertLoopDevice(device);
    assertHostPath('image', imagePath);
    const backing = await canonical(imagePath);
    const current = (await this.list(opts)).find((l) => l.device === device);
    // Loop numbers are reused: a device now backed by another file is not ours any more.
    if (current === undefined || current.backingFile !== backing) return;
    await this.detachDevice(device, opts);
  }

  async sizeBytes(device: string, opts: CallOpts): Promise<number> {
    assertLoopDevice(device);
    const { stdout } = await run(this.blockdev, ['--getsize64', device], {
      signal: opts.signal,
      timeoutMs: this.timeoutMs,
      step: 'loop.size',
    });
    const n = Number(stdout.trim());
    if (!Number.isSafeInteger(n) || n < 0) throw new SandboxdError('operation_failed', `blockdev --getsize64 ${device}: ${stdout}`);
    return n;
  }

  /** Every loop device backed by `filePath`: how an agent finds its loops again after a restart. */
  async findByBackingFile(filePath: string, opts: CallOpts): Promise<LoopAttachment[]> {
    assertHostPath('backing file', filePath);
    const backing = await canonical(filePath);
    return (await this.list(opts)).filter((l) => l.backingFile === backing);
  }

  /**
   * Every attached loop. Read from sysfs (/sys/block/loopN/loop/*, what losetup itself
   * reads): no process per call, which doubles the attach+detach rate; losetup's JSON
   * listing where sysfs has no loop entries to read.
   */
  async list(opts: CallOpts): Promise<LoopAttachment[]> {
    const fromSys = this.listFrom === 'sysfs' ? await listFromSysfs() : undefined;
    if (fromSys !== undefined) return fromSys;
    const { stdout } = await run(this.losetup, ['--list', '--json', '--output', 'NAME,BACK-FILE,RO,AUTOCLEAR'], {
      signal: opts.signal,
      timeoutMs: this.timeoutMs,
      step: 'loop.list',
    });
    try {
      return LoopListing(stdout);
    } catch (err) {
      throw new SandboxdError('operation_failed', `losetup --list: unreadable output: ${String(err)}`, { cause: err });
    }
  }

  private async detachDevice(device: string, opts: CallOpts): Promise<void> {
    try {
      await run(this.losetup, ['--detach', device], { signal: opts.signal, timeoutMs: this.timeoutMs, step: 'loop.detach' });
    } catch (err) {
      if (err instanceof CommandError && GONE.test(err.stderr)) return;
      throw err;
    }
  }

  private async attachFile(filePath: string, readOnly: boolean, opts: CallOpts): Promise<string> {
    assertHostPath('image', filePath);
    return this.locks.run(filePath, () => this.attachUnlocked(filePath, readOnly, opts));
  }

  private async attachUnlocked(filePath: string, readOnly: boolean, opts: CallOpts): Promise<string> {
    let st;
    try {
      st = await stat(filePath);
    } catch {
      throw new SandboxdError('not_found', `image not found: ${filePath}`, { step: 'loop.attach' });
    }
    if (!st.isFile()) throw new SandboxdError('invalid_argument', `not a regular file: ${filePath}`, { step: 'loop.attach' });
    const backing = await realpath(filePath);
    const mine = (all: LoopAttachment[]) =>
      all.filter((l) => l.backingFile === backing && l.readOnly === readOnly && !l.autoclear && !l.deleted);
    const before = mine(await this.list(opts));
    const reuse = before[0];
    if (reuse !== undefined) return reuse.device;
    const args = ['--find', '--show', ...(readOnly ? ['--read-only'] : []), '--', backing];
    try {
      const { stdout } = await run(this.losetup, args, { signal: opts.signal, timeoutMs: this.timeoutMs, step: 'loop.attach' });
      return assertLoopDevice(stdout.trim());
    } catch (err) {
      // Cancelled or timed out after the kernel attached: find what appeared and detach it.
      const signal = cleanupSignal(this.timeoutMs);
      const known = new Set(before.map((l) => l.device));
      const leaked = mine(await this.list({ signal }).catch(() => [])).filter((l) => !known.has(l.device));
      for (const l of leaked) await this.detachDevice(l.device, { signal }).catch(() => undefined);
      throw err;
    }
  }
}

async function listFromSysfs(): Promise<LoopAttachment[] | undefined> {
  let names: string[];
  try {
    names = (await readdir('/sys/block')).filter((n) => /^loop[0-9]+$/.test(n));
  } catch {
    return undefined;
  }
  const read = (p: string) => readFile(p, 'utf8').then((s) => s.replace(/\n$/, ''), () => undefined);
  const out: LoopAttachment[] = [];
  for (const name of names) {
    const back = await read(`/sys/block/${name}/loop/backing_file`);
    if (back === undefined) continue; // not attached
    const deleted = back.endsWith(' (deleted)');
    out.push({
      device: `/dev/${name}`,
      backingFile: deleted ? back.slice(0, -' (deleted)'.length) : back,
      readOnly: (await read(`/sys/block/${name}/ro`)) === '1',
      autoclear: (await read(`/sys/block/${name}/loop/autoclear`)) === '1',
      deleted,
    });
  }
  return out;
}

/** The path losetup would print: symlinks resolved; a file that is gone keeps its absolute form. */
export async function canonical(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    return resolve(p);
  }
}
