import type { CallOpts } from '../call.ts';
import type { Drivers } from '../index.ts';
import { SNAPSHOT_META_FILE } from '../files/meta.ts';
import type { Holdings, HostSweeper, Swept } from '../host/sweeper.ts';
import type { FakeHost } from './host.ts';

/** The sweep over the fake host's ledger, through the fake drivers (so their faults apply). */
export class FakeSweeper implements HostSweeper {
  constructor(
    private readonly host: FakeHost,
    private readonly drivers: () => Drivers,
  ) {}

  async sweep(keep: Holdings, opts: CallOpts): Promise<Swept> {
    const d = this.drivers();
    const l = this.host.ledger;
    const out: Swept = { vmm: [], disk: [], cow: [], loop: [], network: [], staging: [], 'sandbox-dir': [] };
    for (const id of [...l.vms.keys()].filter((id) => !keep.vms.has(id))) {
      await d.vmm.destroy(id, opts);
      out.vmm!.push(id);
    }
    for (const disk of [...l.disks.values()].filter((x) => !keep.disks.has(x.name))) {
      await d.disk.remove(disk, opts);
      out.disk!.push(disk.name);
    }
    for (const cow of [...l.cows].filter((c) => !keep.cows.has(c))) {
      await d.disk.discard(cow, opts);
      out.cow!.push(cow);
    }
    for (const [device, { imagePath }] of [...l.loops].filter(([, v]) => !keep.origins.has(v.imagePath))) {
      await d.loop.detach(device, imagePath, opts);
      out.loop!.push(device);
    }
    for (const slot of [...l.networks].filter((s) => !keep.networks.has(s))) {
      await d.network.remove(slot, opts);
      out.network!.push(String(slot));
    }
    out.staging = await d.files.cleanupOrphans({ ...opts, keep: { sandboxIds: keep.sandboxes, stagingDirs: keep.stagingDirs } });
    for (const id of [...l.sandboxDirs].filter((id) => !keep.sandboxDirs.has(id))) {
      // A pause dir nobody claimed is left for an operator, like one that does not parse.
      if (this.host.fs.readFile(`${d.files.sandboxDir(id)}/${SNAPSHOT_META_FILE}`) !== undefined) continue;
      await d.files.removeSandboxDir(id, opts);
      out['sandbox-dir']!.push(id);
    }
    return out;
  }
}
