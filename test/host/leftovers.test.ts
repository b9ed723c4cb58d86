// Runs last in `npm test` (scripts/run-tests.ts puts every leftovers.test.ts at
// the end): nothing any test made may outlive the suite. Tests name what they
// make on the host `sbxt…` (namespaces, links, nft tables, dm devices) or keep it
// under a `/tmp/sandboxd-test-*` dir (loop backing files, mounts, VMM sockets),
// so anything matching here is a leak, whichever test made it. A process still
// under a running test runner is that test's (another run on the same machine);
// other objects of a test still running elsewhere go away by themselves, so the
// check polls for a while before it reports.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { execa } from 'execa';
import { deviceMapperAvailable } from '../../drivers/storage/dm-disk.ts';

const TEST_DIR = '/tmp/sandboxd-test-';
const PREFIX = 'sbxt';
const SETTLE_MS = 30_000;

async function run(file: string, args: string[]): Promise<string> {
  const r = await execa(file, args, { timeout: 10_000, reject: false });
  return r.exitCode === 0 ? String(r.stdout) : '';
}

const json = <T>(text: string, fallback: T): T => (text.trim() === '' ? fallback : (JSON.parse(text) as T));

/** Every host object under a test prefix, one string each. */
async function testObjects(): Promise<string[]> {
  const out: string[] = [];
  if (process.getuid?.() === 0) {
    const namespaces = json<{ name: string }[]>(await run('ip', ['-j', 'netns', 'list']), []);
    out.push(...namespaces.filter((n) => n.name.startsWith(PREFIX)).map((n) => `namespace ${n.name}`));
    const links = json<{ ifname: string }[]>(await run('ip', ['-j', 'link', 'show']), []);
    out.push(...links.filter((l) => l.ifname.startsWith(PREFIX)).map((l) => `link ${l.ifname}`));
    const tables = json<{ nftables?: { table?: { family: string; name: string } }[] }>(await run('nft', ['-j', 'list', 'tables']), {});
    out.push(...(tables.nftables ?? []).flatMap((x) => (x.table?.name.startsWith(PREFIX) ? [`nft table ${x.table.family} ${x.table.name}`] : [])));
    const loops = json<{ loopdevices?: { name: string; 'back-file': string | null }[] }>(
      await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']),
      {},
    );
    out.push(...(loops.loopdevices ?? []).filter((l) => l['back-file']?.startsWith(TEST_DIR)).map((l) => `loop ${l.name} on ${l['back-file']}`));
    if (deviceMapperAvailable()) {
      const dm = (await run('dmsetup', ['ls'])).split('\n').map((l) => l.split(/\s+/)[0] ?? '');
      out.push(...dm.filter((n) => n.startsWith(`${PREFIX}-`)).map((n) => `dm device ${n}`));
    }
  }
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '');
  out.push(...mounts.filter((m) => m.startsWith(TEST_DIR)).map((m) => `mount ${m}`));
  out.push(...testProcesses());
  return out.sort();
}

/**
 * Processes started with a test dir on their command line (VMMs, their guest
 * processes, helpers) that no running test owns: a leaked one was reparented
 * when its test's process exited, while one whose ancestors include a live test
 * runner belongs to a test still running (another run on the same machine).
 */
function testProcesses(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    const cmdline = cmdlineOf(Number(pid));
    if (cmdline.includes(TEST_DIR) && !ownedByRunningTest(Number(pid))) out.push(`process ${pid}: ${cmdline.slice(0, 160)}`);
  }
  return out;
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return ''; // exited while we looked
  }
}

function ownedByRunningTest(pid: number): boolean {
  for (let p = parentOf(pid), hops = 0; p > 1 && hops < 64; p = parentOf(p), hops++) {
    if (p === process.pid) return false;
    if (/(^| )--test( |$)|\.test\.ts\b/.test(cmdlineOf(p))) return true;
  }
  return false;
}

function parentOf(pid: number): number {
  try {
    return Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

test('no namespace, link, nft table, loop device, dm device, mount or process of any test is left on the host', { timeout: SETTLE_MS + 30_000 }, async () => {
  const deadline = Date.now() + SETTLE_MS;
  let found = await testObjects();
  while (found.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    found = await testObjects();
  }
  assert.deepEqual(found, []);
});
