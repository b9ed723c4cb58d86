import { ApiError } from './api-error.ts';
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import * as J from './json-shape.ts';

// The subset of CH's VmConfig JSON the simulator understands. It is the body of
// vm.create, the `config` of vm.info and the content of a snapshot's config.json
// (§1.3, §2.2). Unknown keys are kept, so a config survives a round trip.

export const PAGE_SIZE = 4096;
/** The simulated guest keeps its state in the first 4 MiB of RAM (guest-state.ts). */
export const MIN_MEMORY_BYTES = 8 * 1024 * 1024;

type ConsoleMode = 'Off' | 'Pty' | 'Tty' | 'File' | 'Socket' | 'Null';
const CONSOLE_MODES: readonly ConsoleMode[] = ['Off', 'Pty', 'Tty', 'File', 'Socket', 'Null'];

export interface ConsoleConfig {
  mode: ConsoleMode;
  file?: string | null;
  socket?: string | null;
  [key: string]: unknown;
}

export interface VmConfig {
  cpus: { boot_vcpus: number; max_vcpus: number; [key: string]: unknown };
  memory: { size: number; shared: boolean; hugepages: boolean; hotplug_size?: number | null; [key: string]: unknown };
  payload: { kernel?: string | null; firmware?: string | null; cmdline?: string | null; initramfs?: string | null; [key: string]: unknown };
  disks?: { path: string; readonly: boolean; id?: string | null; [key: string]: unknown }[] | null;
  net?: { tap?: string | null; mac?: string | null; id?: string | null; [key: string]: unknown }[] | null;
  balloon?: { size: number; deflate_on_oom: boolean; free_page_reporting: boolean; [key: string]: unknown } | null;
  serial: ConsoleConfig;
  console: ConsoleConfig;
  [key: string]: unknown;
}

function consoleConfig(value: unknown, at: string, fallback: ConsoleMode): ConsoleConfig {
  const o = J.optObject(value, at);
  if (!o) return { mode: fallback };
  const mode = J.oneOf(o.mode, CONSOLE_MODES, `${at}.mode`);
  if (!mode) throw new J.ShapeError(`missing field mode at ${at}`);
  return { ...o, mode, file: J.optString(o.file, `${at}.file`), socket: J.optString(o.socket, `${at}.socket`) };
}

/** Checks a VmConfig JSON value (serde-like: required fields, types, defaults; unknown keys kept). */
export function parseVmConfig(value: unknown): VmConfig {
  const o = J.object(value, 'top level');
  const cpus = J.optObject(o.cpus, 'cpus');
  const boot = J.optUint(cpus?.boot_vcpus, 'cpus.boot_vcpus') ?? 1;
  const memory = J.optObject(o.memory, 'memory');
  const payload = J.optObject(o.payload, 'payload');
  if (!payload) throw new J.ShapeError('missing field payload');
  const balloon = J.optObject(o.balloon, 'balloon');
  return {
    ...o,
    cpus: { ...cpus, boot_vcpus: boot, max_vcpus: J.optUint(cpus?.max_vcpus, 'cpus.max_vcpus') ?? boot },
    memory: {
      ...memory,
      size: J.optUint(memory?.size, 'memory.size') ?? 512 * 1024 * 1024,
      shared: J.optBool(memory?.shared, 'memory.shared') ?? false,
      hugepages: J.optBool(memory?.hugepages, 'memory.hugepages') ?? false,
      hotplug_size: J.optUint(memory?.hotplug_size, 'memory.hotplug_size') ?? null,
    },
    payload: {
      ...payload,
      kernel: J.optString(payload.kernel, 'payload.kernel'),
      firmware: J.optString(payload.firmware, 'payload.firmware'),
      cmdline: J.optString(payload.cmdline, 'payload.cmdline'),
      initramfs: J.optString(payload.initramfs, 'payload.initramfs'),
    },
    disks:
      J.optArray(o.disks, 'disks')?.map((d, i) => {
        const disk = J.object(d, `disks[${i}]`);
        return { ...disk, path: J.string(disk.path, `disks[${i}].path`), readonly: J.optBool(disk.readonly, `disks[${i}].readonly`) ?? false, id: J.optString(disk.id, `disks[${i}].id`) };
      }) ?? null,
    net:
      J.optArray(o.net, 'net')?.map((n, i) => {
        const net = J.object(n, `net[${i}]`);
        return { ...net, tap: J.optString(net.tap, `net[${i}].tap`), mac: J.optString(net.mac, `net[${i}].mac`), id: J.optString(net.id, `net[${i}].id`) };
      }) ?? null,
    balloon: balloon
      ? {
          ...balloon,
          size: J.uint(balloon.size, 'balloon.size'),
          deflate_on_oom: J.optBool(balloon.deflate_on_oom, 'balloon.deflate_on_oom') ?? false,
          free_page_reporting: J.optBool(balloon.free_page_reporting, 'balloon.free_page_reporting') ?? false,
        }
      : null,
    serial: consoleConfig(o.serial, 'serial', 'Null'),
    console: consoleConfig(o.console, 'console', 'Tty'),
  };
}

function invalid(message: string, conflict = false): ApiError {
  return new ApiError(conflict ? 'ConfigValidationConflict' : 'ConfigValidation', [
    'Error from API',
    'The VM could not be created',
    'Error validating configuration',
    message,
  ]);
}

/** CH's VmConfig::validate, reduced to what the simulator can check. */
export function validateVmConfig(config: VmConfig): void {
  if (!config.payload.kernel && !config.payload.firmware) throw invalid('No kernel or firmware specified');
  const { boot_vcpus, max_vcpus } = config.cpus;
  if (boot_vcpus < 1 || boot_vcpus > max_vcpus) throw invalid(`Invalid vCPU counts: boot ${boot_vcpus}, max ${max_vcpus}`);
  const size = config.memory.size;
  if (size % PAGE_SIZE !== 0) throw invalid(`Memory size ${size} is not page aligned`);
  if (size < MIN_MEMORY_BYTES) throw invalid(`Memory size ${size} is below the simulator's minimum of ${MIN_MEMORY_BYTES}`);
  if (config.balloon && config.balloon.size >= size) throw invalid('Balloon size must be smaller than the guest memory');
  const paths = new Set<string>();
  for (const disk of config.disks ?? []) {
    if (paths.has(disk.path)) throw invalid(`Duplicate device path: ${disk.path}`, true);
    paths.add(disk.path);
  }
  const ids = new Set<string>();
  for (const dev of [...(config.disks ?? []), ...(config.net ?? [])]) {
    if (!dev.id) continue;
    if (ids.has(dev.id)) throw invalid(`Identifier ${dev.id} is not unique`, true);
    ids.add(dev.id);
  }
}

/** Gives unnamed devices CH's generated ids: `_disk<n>`, `_net<n>` from one shared counter. */
export function assignDeviceIds(config: VmConfig): VmConfig {
  let counter = 0;
  const next = (prefix: string): string => `${prefix}${counter++}`;
  return {
    ...config,
    disks: config.disks?.map((d) => ({ ...d, id: d.id ?? next('_disk') })) ?? null,
    net: config.net?.map((n) => ({ ...n, id: n.id ?? next('_net') })) ?? null,
  };
}

/**
 * What CH opens when it builds the devices of a config (boot or restore): every
 * disk image, and the files and sockets of the serial port and console. Returns the
 * first problem, or undefined. A restored config names the paths of the VM it was
 * taken from, so they must exist again (reference §2.2).
 */
export function missingDevicePath(config: VmConfig): string | undefined {
  for (const disk of config.disks ?? []) {
    try {
      statSync(disk.path);
    } catch (err) {
      return `Failed to open disk image ${disk.path}: ${(err as Error).message}`;
    }
  }
  for (const [name, port] of [['serial', config.serial], ['console', config.console]] as const) {
    const path = port.mode === 'File' ? port.file : port.mode === 'Socket' ? port.socket : undefined;
    if (!path) continue;
    try {
      if (!statSync(dirname(path)).isDirectory()) throw new Error('not a directory');
    } catch (err) {
      return `Error creating ${name} output ${path}: ${(err as Error).message}`;
    }
  }
  return undefined;
}
