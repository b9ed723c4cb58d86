import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { EnvdClient } from '../../drivers/envd/envd-client.ts';
import type { ChDriver } from '../../drivers/vmm/ch/ch-driver.ts';
import type { VmExit } from '../../drivers/vmm/vmm.ts';
import { makeSimHost, pidExists, type SimHost } from './support/sim-host.ts';

// ChDriver against the Cloud Hypervisor simulator (drivers/vmm/sim/chsim): real
// detached processes, unix sockets and the stand-in envd on loopback. Every test
// checks that no process, socket, pidfile or restore dir is left behind.

const envd = new EnvdClient({ healthPollMs: 10 });
const opts = () => ({ signal: AbortSignal.timeout(30_000) });

async function withHost(
  t: { after(fn: () => Promise<void>): void },
  fn: (host: SimHost, violations: string) => Promise<void>,
  ids: string[],
): Promise<SimHost> {
  const host = makeSimHost();
  const violations = join(host.root, 'violations.jsonl');
  const driver = host.driver({ env: { CHSIM_VIOLATIONS: violations } });
  t.after(async () => {
    // Whatever happened, no VMM outlives its test.
    for (const id of ids) await driver.destroy(id, { signal: AbortSignal.timeout(15_000) }).catch(() => undefined);
    host.remove();
  });
  await fn(host, violations);
  return host;
}

/** The VMM child is unref'd (it must not hold the agent open), so a test waiting on its exit holds the loop itself. */
async function holdingLoop<T>(p: Promise<T>): Promise<T> {
  const timer = setInterval(() => undefined, 1000);
  try {
    return await p;
  } finally {
    clearInterval(timer);
  }
}

function violationsOf(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

function assertGone(host: SimHost, pids: number[]): void {
  for (const pid of pids) assert.ok(!pidExists(pid), `VMM pid ${pid} still exists`);
  assert.deepEqual(host.leftovers(), [], 'runDir holds leftovers');
}

for (const version of ['47', '52', '53']) {
  test(`v${version}: boot, pause, snapshot, destroy, restore from that dir, resume and exec real output, leaving nothing behind`, async (t) => {
    await withHost(t, async (host, violations) => {
      const driver = host.driver({ env: { CHSIM_VERSION: version, CHSIM_VIOLATIONS: violations } });
      const booted = await driver.boot(host.spec('sb-first'), opts());
      assert.equal((await driver.info('sb-first', opts())).state, 'Running');
      assert.ok(existsSync(join(host.runDir, 'sb-first.pid')));
      await envd.waitHealthy(booted.envdUrl, 10_000, opts());
      assert.equal((await envd.exec(booted.envdUrl, { cmd: 'echo', args: ['booted'] }, opts())).stdout, 'booted\n');

      await driver.pause('sb-first', opts());
      await driver.pause('sb-first', opts()); // a re-run step must not fail on "already paused"
      assert.equal((await driver.info('sb-first', opts())).state, 'Paused');
      const snap = join(host.root, 'snap');
      mkdirSync(snap);
      await driver.snapshot('sb-first', snap, opts());
      assert.deepEqual(readdirSync(snap).sort(), ['config.json', 'memory-ranges', 'state.json']);
      await driver.destroy('sb-first', opts());
      assertGone(host, [booted.pid]);

      const restored = await driver.restore({ ...host.spec('sb-second'), snapshotDir: snap, lazyMemory: true }, opts());
      assert.equal(restored.lazyMemory, Number(version) >= 52, 'on-demand memory only where the VMM has it');
      assert.equal((await driver.info('sb-second', opts())).state, 'Paused');
      await driver.resume('sb-second', opts());
      await driver.resume('sb-second', opts());
      await envd.waitHealthy(restored.envdUrl, 10_000, opts());
      const out = await envd.exec(restored.envdUrl, { cmd: 'sh', args: ['-c', 'echo out; echo err >&2; exit 4'] }, opts());
      assert.deepEqual(out, { exitCode: 4, stdout: 'out\n', stderr: 'err\n' });
      await driver.destroy('sb-second', opts());
      assertGone(host, [restored.pid]);
      assert.deepEqual(violationsOf(violations), [], 'the simulator saw no contract violation');
    }, ['sb-first', 'sb-second']);
  });
}

/** Boots, pauses and snapshots a sandbox, then destroys it: the snapshot dir a lazy restore starts from. */
async function snapshotOf(host: SimHost, driver: ChDriver, id: string): Promise<string> {
  await driver.boot(host.spec(id), opts());
  await driver.pause(id, opts());
  const snap = join(host.root, `snap-${id}`);
  mkdirSync(snap);
  await driver.snapshot(id, snap, opts());
  await driver.destroy(id, opts());
  return snap;
}

test('v52: after a lazy restore, init then the memory loader run to done, and the next snapshot loses no page', async (t) => {
  await withHost(t, async (host, violations) => {
    const driver = host.driver({ env: { CHSIM_VERSION: '52', CHSIM_VIOLATIONS: violations } });
    const snap = await snapshotOf(host, driver, 'sb-lazy-src');
    const h = await driver.restore({ ...host.spec('sb-lazy'), snapshotDir: snap, lazyMemory: true }, opts());
    assert.equal(h.lazyMemory, true);
    await driver.resume('sb-lazy', opts());
    await envd.waitHealthy(h.envdUrl, 10_000, opts());
    await envd.init(h.envdUrl, {}, opts());
    await envd.startMemoryLoader(h.envdUrl, opts());
    const final = await envd.waitMemoryLoader(h.envdUrl, { ...opts(), pollMs: 20 });
    assert.equal(final.state, 'done');
    assert.ok(final.pages > 0);
    await driver.pause('sb-lazy', opts());
    const again = join(host.root, 'snap-again');
    mkdirSync(again);
    await driver.snapshot('sb-lazy', again, opts());
    await driver.destroy('sb-lazy', opts());
    assert.deepEqual(violationsOf(violations), [], 'no snapshot of half-loaded memory');
    assertGone(host, [h.pid]);
  }, ['sb-lazy-src', 'sb-lazy']);
});

test('v53: a snapshot right after a lazy restore waits out VmRestoring instead of failing', async (t) => {
  await withHost(t, async (host, violations) => {
    const driver = host.driver({ env: { CHSIM_VERSION: '53', CHSIM_VIOLATIONS: violations } });
    const snap = await snapshotOf(host, driver, 'sb-v53-src');
    const h = await driver.restore({ ...host.spec('sb-v53'), snapshotDir: snap, lazyMemory: true }, opts());
    const again = join(host.root, 'snap-again');
    mkdirSync(again);
    await driver.snapshot('sb-v53', again, opts());
    assert.deepEqual(readdirSync(again).sort(), ['config.json', 'memory-ranges', 'state.json']);
    await driver.destroy('sb-v53', opts());
    assert.deepEqual(violationsOf(violations), []);
    assertGone(host, [h.pid]);
  }, ['sb-v53-src', 'sb-v53']);
});

test('a VMM killed with SIGKILL is reported once by watchExit, and destroy afterwards still cleans up', async (t) => {
  await withHost(t, async (host) => {
    const driver = host.driver();
    const h = await driver.boot(host.spec('sb-crash'), opts());
    const exits: VmExit[] = [];
    const reported = new Promise<void>((resolve) => driver.watchExit('sb-crash', (e) => (exits.push(e), resolve())));
    process.kill(h.pid, 'SIGKILL');
    await holdingLoop(reported);
    assert.deepEqual(exits, [{ sandboxId: 'sb-crash', code: null, signal: 'SIGKILL' }]);
    await driver.destroy('sb-crash', opts());
    await driver.destroy('sb-crash', opts());
    assertGone(host, [h.pid]);
    assert.equal(exits.length, 1);
  }, ['sb-crash']);
});

test('a deliberate destroy is no crash: watchExit stays silent, and a second destroy is a no-op', async (t) => {
  await withHost(t, async (host) => {
    const driver = host.driver();
    const h = await driver.boot(host.spec('sb-calm'), opts());
    const exits: VmExit[] = [];
    driver.watchExit('sb-calm', (e) => exits.push(e));
    await driver.destroy('sb-calm', opts());
    await driver.destroy('sb-calm', opts());
    // Give a wrongly fired exit callback its chance: the exit promise has settled by now.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(exits, []);
    assertGone(host, [h.pid]);
  }, ['sb-calm']);
});

test('a VMM that dies during start-up fails boot with its log, leaving no process or file', async (t) => {
  await withHost(t, async (host) => {
    const driver = host.driver();
    const spec = host.spec('sb-early', { diskPath: join(host.root, 'missing.img') });
    await assert.rejects(driver.boot(spec, opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'operation_failed' && /exited during start-up/.test(e.message) && /missing\.img/.test(e.message));
    assertGone(host, []);
  }, ['sb-early']);
});

test('cancelling a boot kills the VMM it spawned', async (t) => {
  await withHost(t, async (host) => {
    // vm.info answers late, so the boot is still waiting when the signal fires.
    const driver = host.driver({ env: { CHSIM_FAULTS: 'vm.info=delay:5000' } });
    const ac = new AbortController();
    const booting = driver.boot(host.spec('sb-cancel'), { signal: ac.signal });
    const deadline = Date.now() + 10_000;
    while (!existsSync(join(host.runDir, 'sb-cancel.pid')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const pid = Number(readFileSync(join(host.runDir, 'sb-cancel.pid'), 'utf8'));
    ac.abort();
    await assert.rejects(booting, (e: unknown) => e instanceof SandboxdError && e.code === 'cancelled');
    assertGone(host, [pid]);
  }, ['sb-cancel']);
});

test('after an agent restart a fresh driver finds VMMs by pidfile, adopts them, reports a crash and destroys by polling /proc', async (t) => {
  await withHost(t, async (host) => {
    const first = host.driver();
    const a = await first.boot(host.spec('sb-adopt-a'), opts());
    const b = await first.boot(host.spec('sb-adopt-b'), opts());
    const second: ChDriver = host.driver();
    assert.deepEqual(await second.find('sb-adopt-a', opts()), { pid: a.pid, apiSocket: a.apiSocket });
    assert.equal(await second.find('sb-nobody', opts()), null);
    const adoptedA = await second.adopt('sb-adopt-a', host.spec('sb-adopt-a').network, opts());
    assert.equal(adoptedA?.pid, a.pid);
    assert.equal(adoptedA?.envdUrl, a.envdUrl);
    assert.equal((await second.info('sb-adopt-a', opts())).state, 'Running');

    // A crash of a VMM this driver did not spawn is seen through /proc.
    const exits: VmExit[] = [];
    const reported = new Promise<void>((resolve) => second.watchExit('sb-adopt-a', (e) => (exits.push(e), resolve())));
    process.kill(a.pid, 'SIGKILL');
    await holdingLoop(reported);
    assert.deepEqual(exits, [{ sandboxId: 'sb-adopt-a', code: null, signal: null }]);
    await second.destroy('sb-adopt-a', opts());

    // Destroying an adopted VMM: shutdown through its socket, then wait on /proc.
    assert.ok(await second.adopt('sb-adopt-b', host.spec('sb-adopt-b').network, opts()));
    await second.destroy('sb-adopt-b', opts());
    const deadline = Date.now() + 5000;
    while ((pidExists(a.pid) || pidExists(b.pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assertGone(host, [a.pid, b.pid]);
  }, ['sb-adopt-a', 'sb-adopt-b']);
});

test('boot of a sandbox whose VMM already runs returns that VMM instead of a second one', async (t) => {
  await withHost(t, async (host) => {
    const driver = host.driver();
    const a = await driver.boot(host.spec('sb-twice'), opts());
    const b = await driver.boot(host.spec('sb-twice'), opts());
    assert.equal(b.pid, a.pid);
    await driver.destroy('sb-twice', opts());
    assertGone(host, [a.pid]);
  }, ['sb-twice']);
});

test('a VMM that stopped answering is killed before a new boot, never doubled', async (t) => {
  await withHost(t, async (host) => {
    const driver = host.driver();
    const mute = await driver.boot(host.spec('sb-mute'), opts());
    process.kill(mute.pid, 'SIGSTOP'); // alive, holding its socket and disk, answering nothing
    const fresh = await driver.boot(host.spec('sb-mute'), opts());
    assert.notEqual(fresh.pid, mute.pid);
    const deadline = Date.now() + 5000;
    while (pidExists(mute.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(!pidExists(mute.pid), 'the mute VMM is gone');
    assert.equal((await driver.info('sb-mute', opts())).state, 'Running');
    await driver.destroy('sb-mute', opts());
    assertGone(host, [fresh.pid]);
  }, ['sb-mute']);
});

test('bad input is refused before anything starts', async (t) => {
  await withHost(t, async (host) => {
    const driver = host.driver();
    await assert.rejects(driver.boot(host.spec('../etc'), opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument');
    await assert.rejects(driver.boot(host.spec('sb-bad', { diskPath: '/tmp/a,b' }), opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument');
    await assert.rejects(driver.snapshot('sb-bad', '/nonexistent/dir', opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument');
    await assert.rejects(driver.restore({ ...host.spec('sb-bad'), snapshotDir: join(host.root, 'nosnap'), lazyMemory: false }, opts()), (e: unknown) => e instanceof SandboxdError && e.code === 'not_found');
    await assert.rejects(driver.info('sb-bad', opts()), (e: unknown) => e instanceof SandboxdError && (e as { kind?: string }).kind === 'unavailable');
    assertGone(host, []);
  }, ['sb-bad']);
});
