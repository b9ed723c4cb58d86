import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SandboxdError } from '../../core/errors.ts';
import { bootArgs, inNamespace, parseMajorVersion, restoreArgs } from '../../drivers/vmm/ch/args.ts';
import { repointConfig } from '../../drivers/vmm/ch/restore-source.ts';
import { parseProcStat } from '../../drivers/vmm/proc-stat.ts';

const net = { slot: 3, namespace: 'sbxns-3', tapName: 'tap0', guestMac: '02:fc:00:00:00:05', guestIp: '169.254.0.21', hostIp: '10.11.0.3' };
const paths = { apiSocket: '/run/sandboxd/sb-a.sock', logFile: '/var/log/sb-a.vmm.log', serialFile: '/var/log/sb-a.serial.log' };
const boot = { kernel: '/k/vmlinux', cmdline: 'console=ttyS0 root=/dev/vda', diskPath: '/dev/mapper/sbx-sb-a', network: net, vcpus: 2, memoryMB: 1024 };

const flag = (args: string[], name: string): string | undefined => args[args.indexOf(name) + 1];

test('boot argv passes each option as one argument, with shared memfd RAM and a reporting balloon', () => {
  const args = bootArgs(paths, boot);
  assert.equal(flag(args, '--api-socket'), 'path=/run/sandboxd/sb-a.sock');
  assert.equal(flag(args, '--disk'), 'path=/dev/mapper/sbx-sb-a');
  assert.equal(flag(args, '--net'), 'tap=tap0,mac=02:fc:00:00:00:05');
  assert.equal(flag(args, '--cpus'), 'boot=2');
  assert.equal(flag(args, '--memory'), 'size=1024M,shared=on');
  assert.equal(flag(args, '--balloon'), 'size=0,free_page_reporting=on');
  assert.equal(flag(args, '--serial'), 'file=/var/log/sb-a.serial.log');
  assert.equal(flag(args, '--console'), 'off');
  assert.equal(flag(args, '--cmdline'), 'console=ttyS0 root=/dev/vda');
});

test('a comma in a path is refused: CH would split it into a second option', () => {
  assert.throws(() => bootArgs(paths, { ...boot, diskPath: '/dev/x,readonly=on' }), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument');
  assert.throws(() => restoreArgs(paths, '/snap/a,prefault=on', false), (e: unknown) => e instanceof SandboxdError && e.code === 'invalid_argument');
  assert.throws(() => bootArgs(paths, { ...boot, diskPath: 'relative/disk' }), SandboxdError);
  assert.throws(() => bootArgs(paths, { ...boot, network: { ...net, tapName: 'tap0,mac=x' } }), SandboxdError);
  assert.throws(() => bootArgs(paths, { ...boot, vcpus: 0 }), SandboxdError);
  assert.throws(() => inNamespace('-n evil', 'ch', []), SandboxdError);
});

test('restore argv carries no VM-config flag (CH would boot and ignore --restore) and asks ondemand only when told', () => {
  const lazy = restoreArgs(paths, '/snap/a', true);
  assert.equal(flag(lazy, '--restore'), 'source_url=file:///snap/a,memory_restore_mode=ondemand');
  assert.equal(flag(restoreArgs(paths, '/snap/a', false), '--restore'), 'source_url=file:///snap/a');
  for (const f of ['--kernel', '--disk', '--net', '--cpus', '--memory', '--serial', '--console', '--cmdline']) assert.ok(!lazy.includes(f), f);
});

test('the VMM runs inside the slot namespace through ip netns exec, and directly without one', () => {
  assert.deepEqual(inNamespace('sbxns-3', '/usr/bin/cloud-hypervisor', ['--x']), { file: 'ip', args: ['netns', 'exec', 'sbxns-3', '/usr/bin/cloud-hypervisor', '--x'] });
  assert.deepEqual(inNamespace(null, 'ch', ['--x']), { file: 'ch', args: ['--x'] });
});

test('version strings of CH --version and vmm.ping both yield the major version', () => {
  assert.equal(parseMajorVersion('cloud-hypervisor v52.0'), 52);
  assert.equal(parseMajorVersion('cloud-hypervisor v40.0-125-gabc'), 40);
  assert.equal(parseMajorVersion('53.0.0'), 53);
  assert.equal(parseMajorVersion('garbage'), null);
});

test('restoring into another sandbox re-points disk, tap, MAC and serial file and keeps every other key', () => {
  const config = {
    cpus: { boot_vcpus: 1, max_vcpus: 1 },
    disks: [{ path: '/dev/mapper/sbx-old', readonly: false, id: '_disk0' }],
    net: [{ tap: 'tapold', mac: '02:00:00:00:00:01', id: '_net1', num_queues: 2 }],
    serial: { mode: 'File', file: '/var/log/old.serial.log' },
    future_key: { kept: true },
  };
  const out = repointConfig(config, { diskPath: '/dev/mapper/sbx-new', network: net, serialFile: '/var/log/new.serial.log' });
  assert.deepEqual(out.disks, [{ path: '/dev/mapper/sbx-new', readonly: false, id: '_disk0' }]);
  assert.deepEqual(out.net, [{ tap: 'tap0', mac: '02:fc:00:00:00:05', id: '_net1', num_queues: 2 }]);
  assert.deepEqual(out.serial, { mode: 'File', file: '/var/log/new.serial.log' });
  assert.deepEqual(out.future_key, { kept: true });
  assert.deepEqual(config.disks[0]?.path, '/dev/mapper/sbx-old', 'input untouched');
  assert.throws(() => repointConfig({ ...config, disks: [] }, { diskPath: '/d', network: net, serialFile: '/s' }), SandboxdError);
});

test('/proc stat parsing survives a comm holding spaces and parentheses', () => {
  const line = '4242 (cloud hyper) (v)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 567 0 0 20 0 3 0 100 0 0';
  assert.deepEqual(parseProcStat(line), { ticks: 1234 + 567, state: 'S' });
  assert.throws(() => parseProcStat('garbage'));
});
