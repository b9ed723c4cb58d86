import { join } from 'node:path';
import { SandboxdError } from '../core/errors.ts';
import { sleep } from '../core/sleep.ts';
import type { Drivers } from '../drivers/index.ts';
import type { DiskRequest } from '../drivers/storage/storage.ts';
import type { SnapshotMeta } from '../drivers/files/meta.ts';
import type { SandboxContext, StepOutput } from '../machines/sandbox/context.ts';
import type { StepName } from '../machines/sandbox/steps.ts';
import type { ConnectionTracker } from './connections.ts';
import type { LoopRegistry } from './loop-registry.ts';
import type { SlotAllocator } from './slots.ts';

/** What the step implementations need besides the drivers. */
export interface StepDeps {
  drivers: Drivers;
  loops: LoopRegistry;
  slots: SlotAllocator;
  connections: ConnectionTracker;
  /** The VMM's per-sandbox working dir for a fresh boot. */
  vmSandboxDir(sandboxId: string): string;
  /** Called once a VM exists, so its unasked exit reaches the machine; returns the unsubscribe. */
  watchVm(sandboxId: string): void;
  unwatchVm(sandboxId: string): void;
  now(): Date;
}

export type StepImpl = (context: SandboxContext, signal: AbortSignal) => Promise<StepOutput | undefined>;

const MiB = 1024 * 1024;
/** Device names carry a fixed prefix (the disk driver's own, when it names one); the validated sandbox id makes them unique. */
export const diskName = (sandboxId: string) => `sbxd-${sandboxId}`;

/** The sandbox's disk device name as the disk driver makes it. */
export const deviceNameOf = (disk: Drivers['disk'], sandboxId: string) => disk.deviceName?.(sandboxId) ?? diskName(sandboxId);

function need<T>(value: T | null | undefined, what: string): T {
  if (value === null || value === undefined) throw new SandboxdError('internal', `step needs ${what}, which is not held`);
  return value;
}

/** Polls the memory loader until it leaves `running`; a failed loader fails the caller (its snapshot would lose pages). */
async function waitForLoader(deps: StepDeps, url: string, signal: AbortSignal): Promise<void> {
  for (;;) {
    const status = await deps.drivers.envd.memoryLoaderStatus(url, { signal });
    if (status.state === 'done' || status.state === 'idle') return;
    if (status.state !== 'running') {
      throw new SandboxdError('operation_failed', `memory loader ${status.state}: ${status.error ?? 'no detail'}`);
    }
    await sleep(200, signal);
  }
}

function snapshotMeta(c: SandboxContext, kind: SnapshotMeta['kind'], now: Date): SnapshotMeta {
  const meta: SnapshotMeta = {
    version: 1,
    kind,
    teamId: c.teamId,
    templateId: c.templateId,
    vcpus: c.vcpus,
    memoryMB: c.memoryMB,
    timeoutSec: c.timeoutSec,
    baseTemplatePath: need(c.res.originPath, 'the base rootfs path'),
    sandboxDir: need(c.vmSandboxDir, 'the VMM sandbox dir'),
    createdAt: now.toISOString(),
  };
  if (kind === 'pause') {
    meta.diskSizeMB = c.diskSizeMB;
    meta.slot = need(c.res.slot, 'a slot');
    meta.cowPath = need(c.res.cowPath, 'the CoW');
  } else if (c.op?.target?.name !== undefined) {
    meta.templateName = c.op.target.name;
  }
  return meta;
}

/** Every step of the sandbox machine, in terms of driver calls. */
export function stepImplementations(deps: StepDeps): Record<StepName, StepImpl> {
  const { drivers: d, loops, slots } = deps;
  const deviceName = (id: string) => deviceNameOf(d.disk, id);
  const diskRequest = (c: SandboxContext): DiskRequest => ({
    name: deviceName(c.id),
    originDevice: need(c.res.loopDevice, 'the origin loop'),
    originPath: need(c.res.originPath, 'the origin path'),
    cowPath: c.res.cowPath ?? d.files.cowPath(c.id),
    sizeBytes: Math.max(c.diskSizeMB * MiB, c.res.originSizeBytes ?? 0),
  });
  const vmUrl = (c: SandboxContext) => need(c.res.vm, 'a VM').envdUrl;
  const target = (c: SandboxContext) => need(c.op?.target, 'a template target');

  return {
    async resolveTemplate(c, signal) {
      const t = await d.templates.resolve(c.teamId, c.templateId, { signal });
      if (t.kind === 'snapshot') {
        const meta = need(t.meta, 'snapshot template metadata');
        return {
          template: { kind: 'snapshot', dir: t.dir, rootfsPath: t.rootfsPath, meta },
          res: { originPath: t.rootfsPath },
          vcpus: meta.vcpus,
          memoryMB: meta.memoryMB,
          vmSandboxDir: meta.sandboxDir,
        };
      }
      return {
        template: { kind: 'base', dir: t.dir, rootfsPath: t.rootfsPath, meta: null },
        res: { originPath: t.rootfsPath },
        vmSandboxDir: deps.vmSandboxDir(c.id),
      };
    },
    async acquireLoop(c, signal) {
      return { res: { loopDevice: await loops.acquire(need(c.res.originPath, 'the origin path'), signal) } };
    },
    async readOriginSize(c, signal) {
      const size = await d.loop.sizeBytes(need(c.res.loopDevice, 'the origin loop'), { signal });
      return { res: { originSizeBytes: size }, diskSizeBytes: Math.max(c.diskSizeMB * MiB, size) };
    },
    async makeSandboxDir(c, signal) {
      await d.files.makeSandboxDir(c.id, { signal });
      return { res: { sandboxDir: true } };
    },
    async createDisk(c, signal) {
      const disk = await d.disk.create(diskRequest(c), { signal });
      return { res: { disk, cowPath: disk.cowPath } };
    },
    async attachDisk(c, signal) {
      return { res: { disk: await d.disk.attach(diskRequest(c), { signal }) } };
    },
    async allocateSlot(c) {
      return { res: { slot: slots.allocate(c.id) } };
    },
    async createNetwork(c, signal) {
      return { res: { network: await d.network.create(need(c.res.slot, 'a slot'), { signal }) } };
    },
    async bootVm(c, signal) {
      const vm = await d.vmm.boot(
        {
          sandboxId: c.id,
          vcpus: c.vcpus,
          memoryMB: c.memoryMB,
          diskPath: need(c.res.disk, 'the disk').devicePath,
          network: need(c.res.network, 'the network'),
          sandboxDir: need(c.vmSandboxDir, 'the VMM sandbox dir'),
        },
        { signal },
      );
      deps.watchVm(c.id);
      return { res: { vm } };
    },
    async restoreVm(c, signal) {
      // Create restores the template's memory; resume restores the sandbox's own pause dir.
      const snapshotDir = c.op?.kind === 'resume' ? d.files.sandboxDir(c.id) : need(c.template, 'a template').dir;
      const vm = await d.vmm.restore(
        {
          sandboxId: c.id,
          snapshotDir,
          diskPath: need(c.res.disk, 'the disk').devicePath,
          network: need(c.res.network, 'the network'),
          sandboxDir: need(c.vmSandboxDir, 'the VMM sandbox dir'),
          lazyMemory: true,
        },
        { signal },
      );
      deps.watchVm(c.id);
      return { res: { vm } };
    },
    async resumeVm(c, signal) {
      await d.vmm.resume(c.id, { signal });
      return undefined;
    },
    async waitEnvd(c, signal) {
      await d.envd.waitHealthy(vmUrl(c), envdBudgetMs(c.memoryMB), { signal });
      return undefined;
    },
    async readEnvdVersion(c, signal) {
      return { envdVersion: await d.envd.version(vmUrl(c), { signal }) };
    },
    async initEnvd(c, signal) {
      const init: { defaultUser?: string; env?: Record<string, string> } = {};
      if (c.defaultUser !== undefined) init.defaultUser = c.defaultUser;
      if (c.env !== undefined) init.env = c.env;
      await d.envd.init(vmUrl(c), init, { signal });
      return undefined;
    },
    async deflateBalloon(c, signal) {
      await d.vmm.setBalloon(c.id, 0, { signal });
      return undefined;
    },
    async startMemoryLoader(c, signal) {
      if (!need(c.res.vm, 'a VM').lazyMemory) return { memoryLoader: 'none' };
      const status = await d.envd.startMemoryLoader(vmUrl(c), { signal });
      return { memoryLoader: status.state === 'running' ? 'running' : 'done' };
    },
    async waitMemoryLoader(c, signal) {
      if (c.memoryLoader !== 'running') return undefined;
      await waitForLoader(deps, vmUrl(c), signal);
      return { memoryLoader: 'done' };
    },
    async quiesce(c, signal) {
      await deps.connections.drain(c.id, 5_000, signal);
      await d.envd.prepareSnapshot(vmUrl(c), { signal: AbortSignal.any([signal, AbortSignal.timeout(5_000)]) });
      return undefined;
    },
    async probeVm(c, signal) {
      // Bounded by the step's own 3 s bound (step-runner.ts).
      const { state } = await d.vmm.info(c.id, { signal });
      if (state !== 'Running') throw new SandboxdError('operation_failed', `VM is ${state}, not Running`);
      return undefined;
    },
    async pauseVm(c, signal) {
      await d.vmm.pause(c.id, { signal });
      return undefined;
    },
    async makeStaging(c, signal) {
      // A staging dir a failed rollback could not remove is removed before a new one replaces it.
      if (c.res.stagingDir !== null) await d.files.removeStaging(c.res.stagingDir, { signal });
      return { res: { stagingDir: await d.files.makeStaging(c.id, { signal }) } };
    },
    async snapshotVm(c, signal) {
      await d.vmm.snapshot(c.id, need(c.res.stagingDir, 'a staging dir'), { signal });
      return undefined;
    },
    async punchZeroPages(c, signal) {
      await d.files.punchZeroPages(need(c.res.stagingDir, 'a staging dir'), { signal });
      return undefined;
    },
    async writePauseMeta(c, signal) {
      await d.files.writeMeta(need(c.res.stagingDir, 'a staging dir'), snapshotMeta(c, 'pause', deps.now()), { signal });
      return undefined;
    },
    async stageCow(c, signal) {
      const staging = need(c.res.stagingDir, 'a staging dir');
      await d.files.stageCow(c.id, staging, { signal });
      return { res: { cowPath: join(staging, 'rootfs.cow') } };
    },
    async swapIn(c, signal) {
      await d.files.swapIn(need(c.res.stagingDir, 'a staging dir'), c.id, { signal });
      return { res: { stagingDir: null, cowPath: d.files.cowPath(c.id) } };
    },
    async checkTarget(c, signal) {
      const t = target(c);
      if (await d.templates.exists(t.teamId, t.templateId, { signal })) {
        throw new SandboxdError('already_exists', `template ${t.templateId} already exists`);
      }
      return undefined;
    },
    async flattenDisk(c, signal) {
      const out = join(need(c.res.stagingDir, 'a staging dir'), 'rootfs.ext4');
      await d.disk.flatten(need(c.res.disk, 'the disk'), out, { signal });
      return undefined;
    },
    async flattenPausedDisk(c, signal) {
      const out = join(need(c.res.stagingDir, 'a staging dir'), 'rootfs.ext4');
      const origin = need(c.res.loopDevice, 'the base rootfs loop');
      const size = await d.loop.sizeBytes(origin, { signal });
      // The sandbox's own disk name: the driver derives its temporary device's name from it.
      const req: DiskRequest = {
        name: deviceName(c.id),
        originDevice: origin,
        originPath: need(c.res.originPath, 'the base rootfs path'),
        cowPath: need(c.res.cowPath, 'the CoW'),
        sizeBytes: Math.max(c.diskSizeMB * MiB, size),
      };
      await d.disk.flattenDetached(req, out, { signal });
      return undefined;
    },
    async linkMemoryFiles(c, signal) {
      await d.files.linkMemoryFiles(d.files.sandboxDir(c.id), need(c.res.stagingDir, 'a staging dir'), { signal });
      return undefined;
    },
    async writeTemplateMeta(c, signal) {
      await d.files.writeMeta(need(c.res.stagingDir, 'a staging dir'), snapshotMeta(c, 'template', deps.now()), { signal });
      return undefined;
    },
    async promoteTemplate(c, signal) {
      const t = target(c);
      const produced = await d.templates.promote(need(c.res.stagingDir, 'a staging dir'), t.teamId, t.templateId, { signal });
      return { producedTemplate: produced, res: { stagingDir: null } };
    },
    async ensureRunning(c, signal) {
      const { state } = await d.vmm.info(c.id, { signal });
      if (state === 'Paused') await d.vmm.resume(c.id, { signal });
      else if (state !== 'Running') throw new SandboxdError('operation_failed', `VM is ${state}`);
      return undefined;
    },
    async readPauseMeta(c, signal) {
      const meta = await d.files.readMeta(d.files.sandboxDir(c.id), { signal });
      return { pauseMeta: meta, res: { originPath: meta.baseTemplatePath }, vmSandboxDir: meta.sandboxDir };
    },

    // Undo steps: each reports its resource as released (null).
    async removeStaging(c, signal) {
      const staging = need(c.res.stagingDir, 'a staging dir');
      await d.files.removeStaging(staging, { signal });
      const cowWasStaged = c.res.cowPath?.startsWith(`${staging}/`) ?? false;
      return { res: cowWasStaged ? { stagingDir: null, cowPath: null } : { stagingDir: null } };
    },
    async stopVm(c, signal) {
      // Unwatch first: an exit we asked for is not a crash.
      deps.unwatchVm(c.id);
      await d.vmm.destroy(c.id, { signal });
      return { res: { vm: null } };
    },
    async removeNetwork(c, signal) {
      await d.network.remove(need(c.res.slot ?? c.res.network?.slot, 'a slot'), { signal });
      return { res: { network: null } };
    },
    async releaseSlot(c) {
      slots.release(need(c.res.slot, 'a slot'));
      return { res: { slot: null } };
    },
    async removeDisk(c, signal) {
      await d.disk.remove(need(c.res.disk, 'the disk'), { signal });
      return { res: { disk: null } };
    },
    async discardCow(c, signal) {
      await d.disk.discard(need(c.res.cowPath, 'the CoW'), { signal });
      return { res: { cowPath: null } };
    },
    async releaseLoop(c, signal) {
      await loops.release(need(c.res.originPath, 'the origin path'), signal);
      return { res: { loopDevice: null } };
    },
    async removeSandboxDir(c, signal) {
      await d.files.removeSandboxDir(c.id, { signal });
      return { res: { sandboxDir: false, cowPath: null } };
    },
  };
}

/** lifecycle.md: 8 s per GiB of guest RAM, at least 120 s. */
export function envdBudgetMs(memoryMB: number): number {
  return Math.max(120_000, Math.ceil((memoryMB / 1024) * 8_000));
}
