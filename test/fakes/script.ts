// Driver-level scripts of the lifecycle (create, pause, resume, destroy) in the
// order lifecycle.md gives, so the fake tests and the fake bench exercise the
// drivers the way the runtime will. The loop is shared per template: callers
// that run several sandboxes detach it themselves.
import type { Drivers } from '../../drivers/index.ts';
import type { NetworkHandle } from '../../drivers/network/network.ts';
import type { DiskHandle, DiskRequest } from '../../drivers/storage/storage.ts';
import type { VmHandle } from '../../drivers/vmm/vmm.ts';

// Nothing ever aborts it, so one signal serves every call (the bench makes millions).
const NEVER = { signal: new AbortController().signal };

export function opts(): { signal: AbortSignal } {
  return NEVER;
}

export interface Running {
  id: string;
  slot: number;
  loop: string;
  rootfsPath: string;
  disk: DiskHandle;
  net: NetworkHandle;
  vm: VmHandle;
  /** The VMM's sandbox dir the VM was started with. */
  vmmDir: string;
}

export function diskRequest(d: Drivers, id: string, loop: string, rootfsPath: string, sizeBytes: number): DiskRequest {
  return { name: `sbxt-${id}`, originDevice: loop, originPath: rootfsPath, cowPath: d.files.cowPath(id), sizeBytes };
}

export async function createFromBase(d: Drivers, id: string, slot: number, team = 'team-a', template = 'base'): Promise<Running> {
  const o = opts();
  const tmpl = await d.templates.resolve(team, template, o);
  const loop = await d.loop.attach(tmpl.rootfsPath, o);
  const size = await d.loop.sizeBytes(loop, o);
  await d.files.makeSandboxDir(id, o);
  const disk = await d.disk.create(diskRequest(d, id, loop, tmpl.rootfsPath, size), o);
  const net = await d.network.create(slot, o);
  const vmmDir = d.files.sandboxDir(id);
  const vm = await d.vmm.boot({ sandboxId: id, vcpus: 1, memoryMB: 512, diskPath: disk.devicePath, network: net, sandboxDir: vmmDir }, o);
  await d.envd.waitHealthy(vm.envdUrl, 120_000, o);
  await d.envd.init(vm.envdUrl, {}, o);
  return { id, slot, loop, rootfsPath: tmpl.rootfsPath, disk, net, vm, vmmDir };
}

/** Create from the snapshot template `system/snap`: restore instead of boot, then init, then the loader. */
export async function createFromSnapshot(d: Drivers, id: string, slot: number): Promise<Running> {
  const o = opts();
  const tmpl = await d.templates.resolve('team-a', 'snap', o);
  if (tmpl.meta === null) throw new Error('snap is not a snapshot template');
  const loop = await d.loop.attach(tmpl.rootfsPath, o);
  const size = await d.loop.sizeBytes(loop, o);
  await d.files.makeSandboxDir(id, o);
  const disk = await d.disk.create(diskRequest(d, id, loop, tmpl.rootfsPath, size), o);
  const net = await d.network.create(slot, o);
  const vmmDir = tmpl.meta.sandboxDir;
  const vm = await d.vmm.restore(
    { sandboxId: id, diskPath: disk.devicePath, network: net, sandboxDir: vmmDir, snapshotDir: tmpl.dir, lazyMemory: true },
    o,
  );
  await d.vmm.resume(id, o);
  await d.envd.waitHealthy(vm.envdUrl, 120_000, o);
  await d.envd.init(vm.envdUrl, {}, o);
  await d.envd.startMemoryLoader(vm.envdUrl, o);
  return { id, slot, loop, rootfsPath: tmpl.rootfsPath, disk, net, vm, vmmDir };
}

export async function waitMemoryLoader(d: Drivers, s: Running): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const status = await d.envd.memoryLoaderStatus(s.vm.envdUrl, opts());
    if (status.state !== 'running') return;
    if (Date.now() > deadline) throw new Error('memory loader still running');
    await new Promise((r) => setImmediate(r));
  }
}

/** Pause steps 2–5 (step 1, waiting for the loader, only when `waitLoader`). */
export async function pause(d: Drivers, s: Running, { waitLoader = true, detachLoop = true } = {}): Promise<void> {
  const o = opts();
  if (waitLoader) await waitMemoryLoader(d, s);
  await d.envd.prepareSnapshot(s.vm.envdUrl, o);
  await d.vmm.pause(s.id, o);
  const staging = await d.files.makeStaging(s.id, o);
  await d.vmm.snapshot(s.id, staging, o);
  await d.files.punchZeroPages(staging, o);
  await d.files.writeMeta(
    staging,
    {
      version: 1,
      kind: 'pause',
      teamId: 'team-a',
      templateId: 'base',
      vcpus: 1,
      memoryMB: 512,
      timeoutSec: 0,
      slot: s.slot,
      baseTemplatePath: s.rootfsPath,
      cowPath: d.files.cowPath(s.id),
      sandboxDir: s.vmmDir,
      createdAt: new Date(0).toISOString(),
    },
    o,
  );
  await d.vmm.destroy(s.id, o);
  await d.network.remove(s.slot, o);
  await d.disk.remove(s.disk, o);
  if (detachLoop) await d.loop.detach(s.loop, s.rootfsPath, o);
  await d.files.stageCow(s.id, staging, o);
  await d.files.swapIn(staging, s.id, o);
}

export async function resume(d: Drivers, id: string, { lazyMemory = true } = {}): Promise<Running> {
  const o = opts();
  const dir = d.files.sandboxDir(id);
  const meta = await d.files.readMeta(dir, o);
  if (meta.slot === undefined) throw new Error('pause meta without slot');
  const loop = await d.loop.attach(meta.baseTemplatePath, o);
  const size = await d.loop.sizeBytes(loop, o);
  const disk = await d.disk.attach(diskRequest(d, id, loop, meta.baseTemplatePath, size), o);
  const net = await d.network.create(meta.slot, o);
  const vm = await d.vmm.restore(
    { sandboxId: id, diskPath: disk.devicePath, network: net, sandboxDir: meta.sandboxDir, snapshotDir: dir, lazyMemory },
    o,
  );
  await d.vmm.resume(id, o);
  await d.envd.waitHealthy(vm.envdUrl, 120_000, o);
  await d.envd.init(vm.envdUrl, {}, o);
  await d.envd.startMemoryLoader(vm.envdUrl, o);
  return { id, slot: meta.slot, loop, rootfsPath: meta.baseTemplatePath, disk, net, vm, vmmDir: meta.sandboxDir };
}

export async function destroy(d: Drivers, s: Running, { detachLoop = true } = {}): Promise<void> {
  const o = opts();
  await d.vmm.destroy(s.id, o);
  await d.network.remove(s.slot, o);
  await d.disk.remove(s.disk, o);
  await d.disk.discard(s.disk.cowPath, o);
  if (detachLoop) await d.loop.detach(s.loop, s.rootfsPath, o);
  await d.files.removeSandboxDir(s.id, o);
}

export async function kvSet(d: Drivers, s: Running, key: string, value: string): Promise<void> {
  const r = await d.envd.exec(s.vm.envdUrl, { cmd: 'kv', args: ['set', key, value] }, opts());
  if (r.exitCode !== 0) throw new Error(`kv set failed: ${r.stderr}`);
}

export async function kvGet(d: Drivers, s: Running, key: string): Promise<string | undefined> {
  const r = await d.envd.exec(s.vm.envdUrl, { cmd: 'kv', args: ['get', key] }, opts());
  return r.exitCode === 0 ? r.stdout : undefined;
}
