// The model and fault suites assert after every step that the ledger matches
// the runtime's state. A ledger that misses an effect, records a failed call
// or compares unequal for equal holdings would make them pass or fail wrongly.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FAKE_METHODS, type FakeMethod } from '../../drivers/fake/faults.ts';
import { createFakeDrivers, type FakeHost } from '../../drivers/fake/index.ts';
import type { Drivers } from '../../drivers/index.ts';
import { createFromBase, createFromSnapshot, destroy, opts, pause, resume } from './script.ts';

test('a create, pause, resume and destroy hold exactly what each step should, and release everything', async () => {
  const { drivers: d, host } = createFakeDrivers();
  const s = await createFromBase(d, 'sb-life', 5);
  const base = `${host.root}/images/teams/system/base/rootfs.ext4`;
  const cow = `${host.root}/sandboxes/sb-life/rootfs.cow`;
  const pid = s.vm.pid;
  assert.deepEqual(host.ledger.snapshot(), {
    loops: [{ device: '/dev/loop0', imagePath: base }],
    disks: [{ name: 'sbxt-sb-life', devicePath: '/dev/mapper/sbxt-sb-life', cowPath: cow }],
    cows: [cow],
    networks: [5],
    vms: [{ sandboxId: 'sb-life', pid, state: 'Running' }],
    sandboxDirs: ['sb-life'],
    stagingDirs: [],
    templates: ['system/base', 'system/snap'],
  });
  await pause(d, s);
  assert.deepEqual(host.ledger.snapshot(), {
    loops: [],
    disks: [],
    cows: [cow],
    networks: [],
    vms: [],
    sandboxDirs: ['sb-life'],
    stagingDirs: [],
    templates: ['system/base', 'system/snap'],
  });
  const resumed = await resume(d, s.id);
  assert.equal(resumed.slot, 5);
  assert.deepEqual(host.ledger.heldBy(s.id), {
    disks: [{ name: 'sbxt-sb-life', devicePath: '/dev/mapper/sbxt-sb-life', cowPath: cow }],
    cows: [cow],
    vm: { pid: resumed.vm.pid, state: 'Running' },
    sandboxDir: true,
    stagingDirs: [],
  });
  assert.notEqual(resumed.vm.pid, pid);
  await destroy(d, resumed);
  assert.equal(host.ledger.isEmpty(), true, JSON.stringify(host.ledger.snapshot()));
  assert.deepEqual(host.problems(), []);
});

test('equal holdings give deep-equal snapshots whatever the order they were acquired in', async () => {
  const one = createFakeDrivers();
  const two = createFakeDrivers();
  const a1 = await createFromBase(one.drivers, 'sb-a', 1);
  const b1 = await createFromBase(one.drivers, 'sb-b', 2);
  const b2 = await createFromBase(two.drivers, 'sb-b', 2);
  const a2 = await createFromBase(two.drivers, 'sb-a', 1);
  // Pids differ with the order; everything else must match.
  const strip = (h: FakeHost) => ({ ...h.ledger.snapshot(), vms: h.ledger.snapshot().vms.map((v) => ({ ...v, pid: 0 })) });
  assert.deepEqual(strip(one.host), strip(two.host));
  await destroy(one.drivers, a1, { detachLoop: false });
  await destroy(two.drivers, a2, { detachLoop: false });
  assert.deepEqual(strip(one.host), strip(two.host));
  await destroy(one.drivers, b1);
  await destroy(two.drivers, b2);
  assert.deepEqual(one.host.ledger.snapshot(), two.host.ledger.snapshot());
});

test('heldBy does not attribute one sandbox’s things to another whose id it prefixes', async () => {
  const { drivers: d, host } = createFakeDrivers();
  await createFromBase(d, 'sb-a', 1);
  await createFromBase(d, 'sb-ab', 2);
  await d.files.makeStaging('sb-ab', opts());
  const held = host.ledger.heldBy('sb-a');
  assert.deepEqual(held.cows, [`${host.root}/sandboxes/sb-a/rootfs.cow`]);
  assert.deepEqual(held.disks.map((x) => x.name), ['sbxt-sb-a']);
  assert.deepEqual(held.stagingDirs, []);
  assert.equal(host.ledger.isEmpty(), false);
});

test('isEmpty ignores templates but sees a lone staging dir', async () => {
  const { drivers: d, host } = createFakeDrivers();
  assert.equal(host.ledger.isEmpty(), true);
  const staging = await d.files.makeStaging('sb-x', opts());
  assert.equal(host.ledger.isEmpty(), false);
  await d.files.removeStaging(staging, opts());
  assert.equal(host.ledger.isEmpty(), true);
});

/** Drivers whose every failed async call is checked to have left the ledger as it found it. */
function checked(d: Drivers, host: FakeHost, failures: string[]): Drivers {
  const wrap = <T extends object>(driver: T, name: string): T =>
    new Proxy(driver, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        if (prop === 'watchExit' || prop === 'sandboxDir' || prop === 'cowPath') return (value as () => unknown).bind(target);
        return async (...args: unknown[]) => {
          const before = host.ledger.snapshot();
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } catch (err) {
            assert.deepEqual(host.ledger.snapshot(), before, `${name}.${String(prop)} failed but changed the ledger`);
            failures.push(`${name}.${String(prop)}`);
            throw err;
          }
        };
      },
    });
  return {
    vmm: wrap(d.vmm, 'vmm'),
    envd: wrap(d.envd, 'envd'),
    loop: wrap(d.loop, 'loop'),
    disk: wrap(d.disk, 'disk'),
    network: wrap(d.network, 'network'),
    files: wrap(d.files, 'files'),
    templates: wrap(d.templates, 'templates'),
    store: d.store,
    sweeper: d.sweeper,
  };
}

async function lifecycle(d: Drivers): Promise<void> {
  const s = await createFromBase(d, 'sb-fault', 1);
  await pause(d, s);
  const r = await resume(d, s.id);
  await destroy(d, r, { detachLoop: false });
  const t = await createFromSnapshot(d, 'sb-fault2', 2);
  await destroy(d, t, { detachLoop: false });
}

test('an injected failure of any method the lifecycle calls changes nothing in the ledger', async () => {
  // Which methods the lifecycle calls, from a clean run.
  const probe = createFakeDrivers();
  await lifecycle(probe.drivers);
  const used = FAKE_METHODS.filter((m) => probe.host.faults.count(m) > 0);
  assert.ok(used.length >= 25, `only ${used.length} methods exercised`);
  for (const method of used) {
    const { drivers, host } = createFakeDrivers();
    host.faults.fail(method as FakeMethod, { times: 1 });
    const failures: string[] = [];
    await assert.rejects(lifecycle(checked(drivers, host, failures)), { message: `injected fault: ${method}` });
    assert.deepEqual(failures, [method]);
  }
});
