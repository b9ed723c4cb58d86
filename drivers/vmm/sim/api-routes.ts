import * as J from './json-shape.ts';
import { parseVmConfig, type VmConfig } from './vm-config.ts';
import type { RestoreRequest } from './cli.ts';
import type { SimVmm } from './vmm.ts';

// CH's HTTP routes (reference §1.3): method, whether a body is taken, how it is
// parsed, and the action. `json` answers 200 with a body; otherwise 204, except
// vmm.shutdown which answers 200 with an empty body.

export interface Route {
  method: 'GET' | 'PUT';
  /** none: any body is a 400. json: a body is required and must parse. */
  body: 'none' | 'json';
  /** Checks the parsed JSON and returns the typed request; throws J.ShapeError. */
  parse?: (value: unknown) => unknown;
  run(vmm: SimVmm, body: unknown): Record<string, unknown> | void;
  /** Status on success when not the default 200-with-body / 204. */
  okStatus?: 200;
}

function snapshotBody(value: unknown): { destination_url: string } {
  const o = J.object(value, 'top level');
  return { ...o, destination_url: J.string(o.destination_url, 'destination_url') };
}

function resizeBody(value: unknown): { desired_vcpus?: number; desired_ram?: number; desired_balloon?: number } {
  const o = J.object(value, 'top level');
  const out: { desired_vcpus?: number; desired_ram?: number; desired_balloon?: number } = {};
  for (const key of ['desired_vcpus', 'desired_ram', 'desired_balloon'] as const) {
    const v = J.optUint(o[key], key);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

/** RestoreConfig; serde names are case-exact in JSON (unlike the CLI). */
export function restoreBody(value: unknown): RestoreRequest & Record<string, unknown> {
  const o = J.object(value, 'top level');
  const out: RestoreRequest & Record<string, unknown> = { ...o, source_url: J.string(o.source_url, 'source_url'), prefault: J.optBool(o.prefault, 'prefault') ?? false };
  const mode = J.oneOf(o.memory_restore_mode, ['Copy', 'OnDemand'] as const, 'memory_restore_mode');
  if (mode) out.memory_restore_mode = mode;
  const resume = J.optBool(o.resume, 'resume');
  if (resume !== undefined) out.resume = resume;
  J.optArray(o.net_fds, 'net_fds')?.forEach((f, i) => {
    const fd = J.object(f, `net_fds[${i}]`);
    J.string(fd.id, `net_fds[${i}].id`);
    J.uint(fd.num_fds, `net_fds[${i}].num_fds`);
  });
  return out;
}

export const ROUTES: Record<string, Route> = {
  'vmm.ping': { method: 'GET', body: 'none', run: (vmm) => vmm.ping() },
  'vmm.shutdown': { method: 'PUT', body: 'none', run: (vmm) => vmm.delete(), okStatus: 200 },
  'vm.info': { method: 'GET', body: 'none', run: (vmm) => vmm.info() },
  'vm.counters': { method: 'GET', body: 'none', run: (vmm) => vmm.counters() },
  'vm.create': { method: 'PUT', body: 'json', parse: parseVmConfig, run: (vmm, body) => vmm.create(body as VmConfig) },
  'vm.boot': { method: 'PUT', body: 'none', run: (vmm) => vmm.boot() },
  'vm.pause': { method: 'PUT', body: 'none', run: (vmm) => vmm.pause() },
  'vm.resume': { method: 'PUT', body: 'none', run: (vmm) => vmm.resume() },
  'vm.shutdown': { method: 'PUT', body: 'none', run: (vmm) => vmm.shutdown() },
  'vm.reboot': { method: 'PUT', body: 'none', run: (vmm) => vmm.reboot() },
  'vm.delete': { method: 'PUT', body: 'none', run: (vmm) => vmm.delete() },
  'vm.power-button': { method: 'PUT', body: 'none', run: (vmm) => vmm.powerButton() },
  'vm.nmi': { method: 'PUT', body: 'none', run: (vmm) => vmm.nmi() },
  'vm.snapshot': {
    method: 'PUT',
    body: 'json',
    parse: snapshotBody,
    run: (vmm, body) => vmm.snapshot(body as { destination_url: string }),
  },
  'vm.restore': {
    method: 'PUT',
    body: 'json',
    parse: restoreBody,
    run: (vmm, body) => vmm.restore(body as RestoreRequest),
  },
  'vm.resize': { method: 'PUT', body: 'json', parse: resizeBody, run: (vmm, body) => vmm.resize(body as ReturnType<typeof resizeBody>) },
};

/** Real CH endpoints the simulator does not model: answered 500 and reported as a violation. */
export const UNSIMULATED = new Set([
  'vm.add-device', 'vm.add-disk', 'vm.add-fs', 'vm.add-net', 'vm.add-pmem', 'vm.add-vdpa', 'vm.add-vsock',
  'vm.add-user-device', 'vm.remove-device', 'vm.resize-zone', 'vm.resize-disk', 'vm.receive-migration',
  'vm.send-migration', 'vm.coredump',
]);
