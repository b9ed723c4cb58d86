import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfig } from '../core/config.ts';
import { assertSandboxId } from '../core/ids.ts';
import type { Logger } from '../core/log.ts';
import { EnvdClient } from './envd/envd-client.ts';
import { FsSnapshotFiles } from './files/fs-files.ts';
import { FsTemplateStore } from './files/fs-templates.ts';
import type { Drivers } from './index.ts';
import { createNetworkDriver, detectNetworkBackend } from './network/index.ts';
import { makeStorage } from './storage/index.ts';
import { RealHostSweeper } from './host/host-sweeper.ts';
import { NetnsNetwork } from './network/netns-network.ts';
import { DmDiskDriver } from './storage/dm-disk.ts';
import { LosetupLoopDriver } from './storage/losetup-loop.ts';
import { SqliteStore } from './store/sqlite-store.ts';
import type { SandboxStore } from './store/store.ts';
import { ChDriver } from './vmm/ch/ch-driver.ts';
import type { VmmDriver } from './vmm/vmm.ts';

/**
 * The real drivers, chosen per configuration: what the agent runs on and what
 * the integration tests drive. Nothing here decides lifecycle; it only picks
 * implementations and the directories they own under the data dir.
 */
export interface AgentDrivers {
  drivers: Drivers;
  /** The VMM's working dir of a freshly booted sandbox (the supervisor's `vmSandboxDir`). */
  vmSandboxDir(sandboxId: string): string;
  /** Removes what the VMM kept after its sandbox is gone for good (its log files). */
  forgetSandbox(sandboxId: string): Promise<void>;
  backends: { disk: 'dm' | 'clone'; network: 'netns' | 'none'; vmm: string };
  dirs: { data: string; run: string; vm: string; logs: string };
}

export interface FactoryOptions {
  /** Extra environment of every VMM process (tests: CHSIM_FAULTS, CHSIM_VERSION). */
  vmmEnv?: Record<string, string>;
  /** Bounds of the VMM driver (tests shorten them). */
  vmmTimeouts?: { startTimeoutMs?: number; shutdownGraceMs?: number; apiTimeoutMs?: number };
  /** Name prefix of disks (tests: 'sbxt-'). */
  diskPrefix?: string;
  /** Tests and benchmarks: another store than `<dataDir>/sandboxd.db`. */
  store?: SandboxStore;
}

export async function createDrivers(config: AgentConfig, log: Logger, opts: FactoryOptions = {}): Promise<AgentDrivers> {
  const data = config.dataDir;
  const dirs = { data, run: join(data, 'run'), vm: join(data, 'run', 'vm'), logs: join(data, 'logs') };
  await mkdir(dirs.vm, { recursive: true, mode: 0o700 });
  await mkdir(dirs.logs, { recursive: true });

  const storage = makeStorage({ backend: config.backends.disk, ...(opts.diskPrefix === undefined ? {} : { prefix: opts.diskPrefix }) });
  const network = config.backends.network === 'auto'
    ? await detectNetworkBackend({ signal: AbortSignal.timeout(10_000) })
    : config.backends.network;
  const networkDriver = createNetworkDriver(network, { layout: { maxSlots: config.slots }, logger: log.child({ component: 'network' }) });

  let kernelPath = config.vmm.kernelPath;
  if (kernelPath === null) {
    // The simulator never reads the kernel, but the command line must name one.
    kernelPath = join(dirs.run, 'sim-vmlinux');
    await writeFile(kernelPath, 'chsim placeholder kernel\n');
  }
  const ch = new ChDriver({
    binary: config.vmm.binary,
    kernelPath,
    ...(config.vmm.kernelCmdline === undefined ? {} : { kernelCmdline: config.vmm.kernelCmdline }),
    runDir: dirs.run,
    logDir: dirs.logs,
    envdAddress: config.vmm.envdAddress,
    ...opts.vmmTimeouts,
    ...(opts.vmmEnv === undefined ? {} : { env: opts.vmmEnv }),
    log: log.child({ component: 'vmm' }),
  });
  const vmSandboxDir = (id: string) => join(dirs.vm, assertSandboxId(id));

  // Opened first: a database the agent must not start on stops it before anything is touched.
  const store = opts.store ?? new SqliteStore(data);
  const vmm = removingOwnDir(ch, vmSandboxDir);
  const files = new FsSnapshotFiles({ dataDir: data, log: log.child({ component: 'files' }) });
  const drivers: Drivers = {
    vmm,
    envd: new EnvdClient(),
    loop: storage.loop,
    disk: storage.disk,
    network: networkDriver,
    files,
    templates: new FsTemplateStore({ dataDir: data, log: log.child({ component: 'templates' }) }),
    store,
    sweeper: new RealHostSweeper({
      dataDir: data,
      runDir: dirs.run,
      vmDir: dirs.vm,
      logDir: dirs.logs,
      files,
      vmm,
      ...(storage.loop instanceof LosetupLoopDriver ? { loops: storage.loop } : {}),
      ...(storage.disk instanceof DmDiskDriver ? { dm: storage.disk } : {}),
      ...(networkDriver instanceof NetnsNetwork ? { networkPrefix: networkDriver.prefix } : {}),
      log: log.child({ component: 'sweep' }),
    }),
  };
  const backends = { disk: storage.kind, network, vmm: config.vmm.simulator ? 'simulator (chsim)' : config.vmm.binary };
  log.info({ ...backends, dataDir: data }, `backends: disk=${backends.disk} network=${backends.network} vmm=${backends.vmm}`);
  if (config.vmm.simulator) {
    log.warn('the VMM is the bundled simulator: guest commands run as real host processes with no isolation; never expose this agent to untrusted callers');
  }
  return {
    drivers,
    vmSandboxDir,
    backends,
    dirs,
    async forgetSandbox(sandboxId) {
      const id = assertSandboxId(sandboxId);
      await Promise.all(['vmm.log', 'serial.log', 'vmm.out'].map((suffix) => rm(join(dirs.logs, `${id}.${suffix}`), { force: true })));
    },
  };
}

/**
 * After the VMM of a sandbox is destroyed, its own working dir goes too. Only
 * the dir named after this sandbox: one launched from a snapshot template runs
 * in the template creator's recorded dir, which others may share.
 */
function removingOwnDir(inner: VmmDriver, dirOf: (id: string) => string): VmmDriver {
  return {
    boot: (spec, o) => inner.boot(spec, o),
    restore: (spec, o) => inner.restore(spec, o),
    info: (id, o) => inner.info(id, o),
    pause: (id, o) => inner.pause(id, o),
    resume: (id, o) => inner.resume(id, o),
    snapshot: (id, dest, o) => inner.snapshot(id, dest, o),
    setBalloon: (id, bytes, o) => inner.setBalloon(id, bytes, o),
    watchExit: (id, onExit) => inner.watchExit(id, onExit),
    adopt: (id, network, o) => inner.adopt(id, network, o),
    async destroy(id, o) {
      await inner.destroy(id, o);
      await rm(dirOf(id), { recursive: true, force: true });
    },
  };
}
