// Network slots created and removed per second: one at a time, and 4 at a
// time, with and without host egress rules, side by side in one run.
// Needs root, ip and nft; uses prefix `sbxtb` and slots 4080+, swept at the end.
import { cpus, loadavg } from 'node:os';
import { execa } from 'execa';
import { isInventoryEmpty, listNetworkInventory, removeOrphans } from '../drivers/network/inventory.ts';
import { NetnsNetwork } from '../drivers/network/netns-network.ts';
import { execaRunner, type CommandRunner } from '../drivers/network/run.ts';

const PREFIX = 'sbxtb';
const EGRESS = `${PREFIX}-egress`;
const ROUNDS = Number(process.env.NET_BENCH_ROUNDS ?? 40);
const layout = { prefix: PREFIX, transitCidr: '169.254.64.0/19', hostCidr: '169.254.96.0/20' };
const signal = () => AbortSignal.timeout(60_000);

let commands = 0;
const counting: CommandRunner = (file, args, opts) => {
  commands++;
  return execaRunner(file, args, opts);
};

async function cycles(net: NetnsNetwork, parallel: number): Promise<{ perSec: number; msPerSlot: number; cmdsPerSlot: number }> {
  commands = 0;
  const start = process.hrtime.bigint();
  for (let done = 0; done < ROUNDS; done += parallel) {
    const slots = Array.from({ length: Math.min(parallel, ROUNDS - done) }, (_, i) => 4080 + i);
    await Promise.all(
      slots.map(async (slot) => {
        await net.create(slot, { signal: signal() });
        await net.remove(slot, { signal: signal() });
      }),
    );
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  return { perSec: (ROUNDS * 1000) / ms, msPerSlot: ms / ROUNDS, cmdsPerSlot: commands / ROUNDS };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root');
  await removeOrphans(PREFIX, [], { signal: signal() });
  await execa('ip', ['link', 'add', EGRESS, 'type', 'veth', 'peer', 'name', `${PREFIX}-egpeer`], { timeout: 10_000 });
  try {
    const plain = new NetnsNetwork({ layout, runner: counting });
    const egress = new NetnsNetwork({ layout, egressInterface: EGRESS, runner: counting });
    await cycles(plain, 1); // warm-up: module loading, netns dir mount, nft table creation
    const rows: [string, Awaited<ReturnType<typeof cycles>>][] = [];
    for (const [name, net] of [['no egress', plain], ['egress rules', egress]] as const) {
      rows.push([`${name}, sequential`, await cycles(net, 1)]);
      rows.push([`${name}, 4 parallel`, await cycles(net, 4)]);
    }
    console.log(
      `network slot create+remove, ${ROUNDS} cycles each (${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)}: figures swing ~2x with load)`,
    );
    for (const [name, r] of rows) {
      const ratio = r.perSec / rows[0]![1].perSec;
      console.log(
        `${name.padEnd(28)} ${r.perSec.toFixed(1).padStart(6)} slots/s  ${r.msPerSlot.toFixed(1).padStart(6)} ms/slot  ` +
          `${r.cmdsPerSlot.toFixed(0).padStart(3)} commands/slot  x${ratio.toFixed(2)} vs first row`,
      );
    }
  } finally {
    await removeOrphans(PREFIX, [], { signal: signal() });
    const left = await listNetworkInventory(PREFIX, { signal: signal() });
    if (!isInventoryEmpty(left)) console.error('leftovers:', JSON.stringify(left));
  }
}

await main();
