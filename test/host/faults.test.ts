// Faults of the real host backends during a lifecycle through the supervisor:
// a data dir that runs out of space while a pause writes its snapshot, and a dm
// device that is still open when a pause removes it (the stand-in dmsetup answers
// "busy" as the kernel does while udev or a late reader holds the node). Each
// ends in its documented state, the host matches the sandbox's account of it, and
// a destroy leaves nothing.
import assert from 'node:assert/strict';
import { readdirSync, statfsSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { SandboxdError } from '../../core/errors.ts';
import { status } from '../../actors/view.ts';
import { assertHostEmpty, assertHostMatches } from './host-match.ts';
import { CALLER, FAULTS_NET, makeRig, missingHost, vmmProcesses, type Rig } from './rig.ts';

const skip = await missingHost();

const statusOf = (rig: Rig, id: string) => status(rig.sup.snapshotOf(id)!);
const kv = async (rig: Rig, id: string, ...args: string[]) => (await rig.sup.exec(CALLER, id, { cmd: 'kv', args, timeoutMs: 10_000 })).stdout.trim();

async function rejection(p: Promise<unknown>): Promise<SandboxdError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof SandboxdError, `expected a SandboxdError, got ${String(err)}`);
  return err;
}

/** Takes every free byte of the filesystem of `dir` with one file; returns its path. */
async function fillUp(dir: string): Promise<string> {
  const filler = join(dir, 'filler');
  const { bavail, bsize } = statfsSync(dir);
  await execa('fallocate', ['-l', String(bavail * bsize), filler], { timeout: 10_000 });
  assert.equal(statfsSync(dir).bavail, 0, 'the data dir is full');
  return filler;
}

test('a pause that runs out of disk space while writing its snapshot rolls back to Running with no staging left, and a destroy leaves nothing', { skip, timeout: 60_000 }, async (t) => {
  const rig = await makeRig(t, { net: FAULTS_NET, tmpfsBytes: 64 << 20 });
  const id = (await rig.sup.create(CALLER, { templateId: 'base', id: 'sb-full', memoryMB: 128 })).sandbox.id;
  assert.equal(await kv(rig, id, 'set', 'k', 'kept'), '');
  const filler = await fillUp(rig.dataDir);

  const err = await rejection(rig.sup.pause(CALLER, id));
  assert.match(err.message, /ENOSPC|No space left|space/i, 'the cause names the full disk');
  assert.equal(statusOf(rig, id), 'running', 'lifecycle.md: a failure while writing the snapshot resumes the VM');
  await assertHostMatches(rig, 'after the failed pause');
  assert.deepEqual(readdirSync(join(rig.dataDir, 'sandboxes')), [id], 'no staging dir survives the rollback');
  assert.equal(await kv(rig, id, 'get', 'k'), 'kept', 'the guest runs on with its memory');

  // Space back: the same sandbox pauses, and destroy takes everything.
  await execa('rm', ['-f', filler], { timeout: 10_000 });
  await rig.sup.pause(CALLER, id);
  await assertHostMatches(rig, 'after the pause that had space');
  await rig.sup.destroy(CALLER, id);
  await assertHostEmpty(rig, 'after destroy');
});

test('removing a dm device that is briefly held open is retried, and the pause completes', { skip, timeout: 60_000 }, async (t) => {
  let holder: FileHandle | null = null;
  const busy: number[] = [];
  const rig = await makeRig(t, {
    net: FAULTS_NET,
    dm: {
      removeRetryDelayMs: 20,
      onRemoveBusy: (_name, attempt) => {
        busy.push(attempt);
        // The late reader lets go after the first refusal.
        void holder?.close().finally(() => (holder = null));
      },
    },
  });
  t.after(() => holder?.close());
  const id = (await rig.sup.create(CALLER, { templateId: 'base', id: 'sb-busy', memoryMB: 128 })).sandbox.id;
  holder = await open(rig.sup.snapshotOf(id)!.context.res.disk!.devicePath, 'r');

  await rig.sup.pause(CALLER, id);
  assert.equal(busy[0], 1, 'the first remove found the device busy');
  assert.equal(statusOf(rig, id), 'paused');
  const inv = await assertHostMatches(rig, 'after the pause');
  assert.deepEqual(inv.storage.dmDevices, [], 'the device went on a retry');
  await rig.sup.resume(CALLER, id);
  await assertHostMatches(rig, 'after resume');
  await rig.sup.destroy(CALLER, id);
  await assertHostEmpty(rig, 'after destroy');
});

test('a dm device that stays open through every remove attempt puts the pausing sandbox in Error holding it, and a destroy once it is closed leaves nothing', { skip, timeout: 60_000 }, async (t) => {
  const rig = await makeRig(t, { net: FAULTS_NET, dm: { removeAttempts: 3, removeRetryDelayMs: 20 } });
  const id = (await rig.sup.create(CALLER, { templateId: 'base', id: 'sb-stuck', memoryMB: 128 })).sandbox.id;
  const holder = await open(rig.sup.snapshotOf(id)!.context.res.disk!.devicePath, 'r');
  t.after(() => holder.close().catch(() => undefined));

  const err = await rejection(rig.sup.pause(CALLER, id));
  assert.match(err.message, /busy/);
  assert.equal(statusOf(rig, id), 'error', 'lifecycle.md: a failure after the VM was released cannot roll back');
  const inv = await assertHostMatches(rig, 'in Error');
  assert.deepEqual(inv.storage.dmDevices, ['sbxt-sb-stuck'], 'the device that could not be removed is still accounted for');
  assert.equal(inv.files.staging.length, 1, 'the snapshot written before the failure is kept for forensics');
  assert.deepEqual([inv.vmms.size, inv.network.namespaces.length], [0, 0], 'the VM and its network were released before the disk');

  await holder.close();
  await rig.sup.destroy(CALLER, id);
  await assertHostEmpty(rig, 'after destroy');
});

test('a VMM killed while its sandbox runs releases the network, slot, disk, loop and dirs on the real host and drops the sandbox', { skip, timeout: 60_000 }, async (t) => {
  const rig = await makeRig(t, { net: FAULTS_NET });
  const id = (await rig.sup.create(CALLER, { templateId: 'base', id: 'sb-crash', memoryMB: 128 })).sandbox.id;
  const events: string[] = [];
  rig.sup.onEvent((e) => {
    if (e.sandboxId === id) events.push(e.type);
  });
  // The deadline's timer also keeps the event loop alive: the VMM child is unref'd.
  const gone = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${id} still there: ${JSON.stringify(rig.sup.snapshotOf(id)?.value)}`)), 30_000);
    rig.sup.onState((c) => {
      if (c.sandboxId === id && rig.sup.snapshotOf(id) === undefined) (clearTimeout(timer), resolve());
    });
  });
  const pid = vmmProcesses(rig.runDir).get(id);
  assert.ok(pid !== undefined, 'the VMM runs');
  process.kill(pid, 'SIGKILL');
  await gone;
  assert.ok(events.includes('error'), `sandbox.error emitted (got ${events.join(', ')})`);
  await assertHostEmpty(rig, 'after the crash was cleaned up');
  assert.deepEqual(readdirSync(rig.runDir), [], 'no socket, pidfile or envd file of the dead VMM');
});

for (const step of ['acquireLoop', 'createDisk', 'createNetwork', 'bootVm', 'waitEnvd'] as const) {
  test(`a destroy that lands while create runs ${step} cancels it, and the rollback leaves nothing on the real host`, { skip, timeout: 60_000 }, async (t) => {
    let started: () => void = () => undefined;
    const reached = new Promise<void>((resolve) => (started = resolve));
    const rig = await makeRig(t, {
      net: FAULTS_NET,
      supervisor: {
        wrapStep: (name, impl) => (c, signal) => {
          if (name === step) started();
          return impl(c, signal);
        },
      },
    });
    const id = 'sb-cancel';
    const create = rig.sup.create(CALLER, { templateId: 'base', id, memoryMB: 128 }).then(() => 'created', (e: unknown) => e);
    await reached;
    await rig.sup.destroy(CALLER, id);
    const outcome = await create;
    assert.ok(outcome instanceof SandboxdError && outcome.code === 'cancelled', `create answered ${String(outcome)}`);
    assert.equal(rig.sup.snapshotOf(id), undefined);
    await assertHostEmpty(rig, `after a destroy during ${step}`);
    assert.deepEqual(readdirSync(rig.runDir), [], 'no VMM files');
  });
}
