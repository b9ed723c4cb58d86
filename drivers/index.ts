import type { EnvdDriver } from './envd/envd.ts';
import type { SnapshotFiles, TemplateStore } from './files/files.ts';
import type { HostSweeper } from './host/sweeper.ts';
import type { NetworkDriver } from './network/network.ts';
import type { DiskDriver, LoopDriver } from './storage/storage.ts';
import type { SandboxStore } from './store/store.ts';
import type { VmmDriver } from './vmm/vmm.ts';

/** Everything the runtime does to the host goes through one of these. */
export interface Drivers {
  vmm: VmmDriver;
  envd: EnvdDriver;
  loop: LoopDriver;
  disk: DiskDriver;
  network: NetworkDriver;
  files: SnapshotFiles;
  templates: TemplateStore;
  store: SandboxStore;
  sweeper: HostSweeper;
}

export type { CallOpts } from './call.ts';
