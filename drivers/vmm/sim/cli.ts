import { byteSize, CliError, integer, parseOptions, toggle } from './ch-options.ts';
import { assignDeviceIds, type VmConfig } from './vm-config.ts';
import { DEFAULT_SIM_VERSION, isSimVersion, traitsOf, type SimVersion } from './version.ts';

// CH's command line (reference §2.1) plus the simulator's own --sim-* flags.

export interface RestoreRequest {
  source_url: string;
  prefault: boolean;
  memory_restore_mode?: 'Copy' | 'OnDemand';
  resume?: boolean;
}

export interface SimOptions {
  version: SimVersion;
  violationsFile: string | undefined;
  faults: string | undefined;
  pidfile: string | undefined;
  /** Scratch dir for the stand-in envd's processes; a temp dir under the socket's dir when absent. */
  stateDir: string | undefined;
  /** v53: idle time before the background uffd prefault starts. */
  prefaultStartMs: number;
  /**
   * Where the stand-in envd listens; loopback on an ephemeral port when absent.
   * Set (e.g. to the guest IP and envd's port) when the simulator runs inside a
   * sandbox's network namespace, so the host reaches it the way it reaches a guest.
   */
  envdListen: { host: string; port: number } | undefined;
}

export interface CommandLine {
  apiSocket: string;
  /** Present when a payload (--kernel/--firmware) was given: create + boot at start-up. */
  vmConfig: VmConfig | undefined;
  /** Ignored (and reported) when a payload is present, as CH does. */
  restore: RestoreRequest | undefined;
  restoreIgnored: boolean;
  logFile: string | undefined;
  verbosity: number;
  noShutdown: boolean;
  sim: SimOptions;
  printVersion: boolean;
}

const VALUE_FLAGS = new Set([
  '--api-socket', '--kernel', '--firmware', '--cmdline', '--initramfs', '--disk', '--net', '--cpus', '--memory',
  '--balloon', '--serial', '--console', '--log-file', '--restore', '--seccomp', '--rng', '--event-monitor',
  '--platform', '--sim-version', '--sim-violations', '--sim-faults', '--sim-pidfile', '--sim-state-dir',
  '--sim-prefault-start-ms', '--sim-envd-listen',
]);
const MULTI_FLAGS = new Set(['--disk', '--net']);
const VM_CONFIG_FLAGS = ['--cmdline', '--initramfs', '--disk', '--net', '--cpus', '--memory', '--balloon', '--serial', '--console'];
const IGNORED_FLAGS = new Set(['--seccomp', '--rng', '--event-monitor', '--platform']);

function collect(argv: readonly string[]): { values: Map<string, string[]>; verbosity: number; bools: Set<string> } {
  const values = new Map<string, string[]>();
  const bools = new Set<string>();
  let verbosity = 0;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (/^-v+$/.test(arg)) {
      verbosity += arg.length - 1;
      continue;
    }
    if (arg === '--no-shutdown' || arg === '--version' || arg === '-V') {
      bools.add(arg === '-V' ? '--version' : arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (!VALUE_FLAGS.has(flag)) throw new CliError(`error: unexpected argument '${arg}' found`, 2);
    const list = values.get(flag) ?? [];
    if (list.length > 0 && !MULTI_FLAGS.has(flag)) {
      throw new CliError(`error: the argument '${flag}' cannot be used multiple times`, 2);
    }
    if (eq > 0 && flag !== arg) list.push(arg.slice(eq + 1));
    else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new CliError(`error: a value is required for '${flag}'`, 2);
      list.push(next);
      i++;
      // --disk and --net take several values in one go, like clap's num_args(1..)
      while (MULTI_FLAGS.has(flag) && argv[i + 1] !== undefined && !(argv[i + 1] as string).startsWith('-')) {
        list.push(argv[i + 1] as string);
        i++;
      }
    }
    values.set(flag, list);
  }
  return { values, verbosity, bools };
}

function consoleOpt(flag: string, text: string): { mode: 'Off' | 'Pty' | 'Tty' | 'File' | 'Socket' | 'Null'; file?: string; socket?: string } {
  const simple = { off: 'Off', null: 'Null', pty: 'Pty', tty: 'Tty' } as const;
  if (text in simple) return { mode: simple[text as keyof typeof simple] };
  if (text.startsWith('file=') && text.length > 5) return { mode: 'File', file: text.slice(5) };
  if (text.startsWith('socket=') && text.length > 7) return { mode: 'Socket', socket: text.slice(7) };
  throw new CliError(`Error parsing ${flag}: invalid console/serial mode "${text}"`);
}

const MAC = /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/;

function buildVmConfig(values: Map<string, string[]>, version: SimVersion): VmConfig {
  const one = (flag: string): string | undefined => values.get(flag)?.[0];
  const cpus = parseOptions('--cpus', one('--cpus') ?? '', ['boot', 'max', 'topology', 'kvm_hyperv', 'max_phys_bits', 'affinity', 'features']);
  const boot = cpus.has('boot') ? integer('--cpus', 'boot', cpus.get('boot') as string) : 1;
  const max = cpus.has('max') ? integer('--cpus', 'max', cpus.get('max') as string) : boot;
  const mem = parseOptions('--memory', one('--memory') ?? '', ['size', 'shared', 'hugepages', 'hugepage_size', 'prefault', 'thp', 'hotplug_size', 'hotplug_method', 'mergeable', 'hotplugged_size']);
  const balloonText = one('--balloon');
  let balloon: VmConfig['balloon'] = null;
  if (balloonText !== undefined) {
    const b = parseOptions('--balloon', balloonText, ['size', 'deflate_on_oom', 'free_page_reporting']);
    const size = b.get('size');
    if (size === undefined) throw new CliError('Error parsing --balloon: size is required');
    balloon = {
      size: byteSize('--balloon', 'size', size),
      deflate_on_oom: toggle('--balloon', 'deflate_on_oom', b.get('deflate_on_oom'), false),
      free_page_reporting: toggle('--balloon', 'free_page_reporting', b.get('free_page_reporting'), false),
    };
  }
  const disks = (values.get('--disk') ?? []).map((text) => {
    const d = parseOptions('--disk', text, ['path', 'readonly', 'direct', 'id', 'image_type', 'lock_granularity', 'num_queues', 'queue_size', 'serial', 'iommu', 'pci_segment', 'vhost_user', 'socket']);
    const path = d.get('path');
    if (!path) throw new CliError('Error parsing --disk: path is required');
    return { path, readonly: toggle('--disk', 'readonly', d.get('readonly'), false), direct: toggle('--disk', 'direct', d.get('direct'), false), id: d.get('id') ?? null };
  });
  const net = (values.get('--net') ?? []).map((text) => {
    const n = parseOptions('--net', text, ['tap', 'mac', 'host_mac', 'ip', 'mask', 'num_queues', 'queue_size', 'id', 'mtu', 'iommu', 'fd', 'pci_segment', 'vhost_user', 'socket', 'offload_tso', 'offload_ufo', 'offload_csum']);
    const mac = n.get('mac');
    if (mac !== undefined && !MAC.test(mac)) throw new CliError(`Error parsing --net: invalid MAC address "${mac}"`);
    // before v49, ip/mask defaulted to 192.168.249.1/24
    const ip = n.get('ip') ?? (version < 49 ? '192.168.249.1' : null);
    const mask = n.get('mask') ?? (version < 49 ? '255.255.255.0' : null);
    const numQueues = n.has('num_queues') ? integer('--net', 'num_queues', n.get('num_queues') as string) : 2;
    return { tap: n.get('tap') ?? null, mac: mac ?? null, host_mac: n.get('host_mac') ?? null, ip, mask, num_queues: numQueues, id: n.get('id') ?? null };
  });
  return assignDeviceIds({
    cpus: { boot_vcpus: boot, max_vcpus: max },
    memory: {
      size: mem.has('size') ? byteSize('--memory', 'size', mem.get('size') as string) : 512 * 1024 * 1024,
      shared: toggle('--memory', 'shared', mem.get('shared'), false),
      hugepages: toggle('--memory', 'hugepages', mem.get('hugepages'), false),
      prefault: toggle('--memory', 'prefault', mem.get('prefault'), false),
      thp: toggle('--memory', 'thp', mem.get('thp'), true),
      hotplug_size: mem.has('hotplug_size') ? byteSize('--memory', 'hotplug_size', mem.get('hotplug_size') as string) : null,
    },
    payload: { kernel: one('--kernel') ?? null, firmware: one('--firmware') ?? null, cmdline: one('--cmdline') ?? null, initramfs: one('--initramfs') ?? null },
    disks: disks.length > 0 ? disks : null,
    net: net.length > 0 ? net : null,
    balloon,
    serial: consoleOpt('--serial', one('--serial') ?? 'null'),
    console: consoleOpt('--console', one('--console') ?? 'tty'),
  });
}

function parseRestore(text: string, version: SimVersion): RestoreRequest {
  const allowed = traitsOf(version).restoreModes
    ? ['source_url', 'prefault', 'memory_restore_mode', 'resume', 'net_fds']
    : ['source_url', 'prefault', 'net_fds'];
  const r = parseOptions('--restore', text, allowed);
  const source = r.get('source_url');
  if (!source) throw new CliError('Error parsing --restore: source_url is required');
  const out: RestoreRequest = { source_url: source, prefault: toggle('--restore', 'prefault', r.get('prefault'), false) };
  const mode = r.get('memory_restore_mode');
  if (mode !== undefined) {
    const lower = mode.toLowerCase(); // case-insensitive at the CLI
    if (lower !== 'copy' && lower !== 'ondemand') throw new CliError(`Error parsing --restore: invalid memory_restore_mode "${mode}"`);
    out.memory_restore_mode = lower === 'copy' ? 'Copy' : 'OnDemand';
  }
  if (r.has('resume')) out.resume = toggle('--restore', 'resume', r.get('resume'), false);
  if (out.memory_restore_mode === 'OnDemand' && out.prefault) {
    throw new CliError('Error parsing --restore: memory_restore_mode=ondemand cannot be combined with prefault=on');
  }
  return out;
}

/** `IPv4:PORT`; anything else is refused rather than guessed at. */
function parseListen(text: string | undefined): SimOptions['envdListen'] {
  if (text === undefined || text === '') return undefined;
  const m = /^((?:\d{1,3}\.){3}\d{1,3}):(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (!m || m[1]!.split('.').some((o) => Number(o) > 255) || port < 1 || port > 65535) {
    throw new CliError(`chsim: invalid --sim-envd-listen "${text}" (expected IPv4:PORT)`);
  }
  return { host: m[1]!, port };
}

export function parseCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv): CommandLine {
  const { values, verbosity, bools } = collect(argv);
  const one = (flag: string): string | undefined => values.get(flag)?.[0];

  const versionText = one('--sim-version') ?? env.CHSIM_VERSION ?? String(DEFAULT_SIM_VERSION);
  const versionNum = Number(versionText);
  if (!isSimVersion(versionNum)) throw new CliError(`chsim: unsupported --sim-version "${versionText}" (40, 47, 52 or 53)`);
  const prefaultText = one('--sim-prefault-start-ms') ?? '50';
  const sim: SimOptions = {
    version: versionNum,
    violationsFile: one('--sim-violations') ?? env.CHSIM_VIOLATIONS,
    faults: one('--sim-faults') ?? env.CHSIM_FAULTS,
    pidfile: one('--sim-pidfile'),
    stateDir: one('--sim-state-dir'),
    prefaultStartMs: integer('--sim-prefault-start-ms', 'value', prefaultText),
    envdListen: parseListen(one('--sim-envd-listen') ?? env.CHSIM_ENVD_LISTEN),
  };
  if (bools.has('--version')) {
    return { apiSocket: '', vmConfig: undefined, restore: undefined, restoreIgnored: false, logFile: undefined, verbosity, noShutdown: false, sim, printVersion: true };
  }
  if (bools.has('--no-shutdown') && !traitsOf(versionNum).restoreModes) {
    throw new CliError("error: unexpected argument '--no-shutdown' found", 2);
  }

  const socketText = one('--api-socket');
  if (socketText === undefined) throw new CliError('chsim: --api-socket is required (the simulator has no other way in)');
  let apiSocket = socketText;
  if (socketText.startsWith('path=') || socketText.startsWith('fd=')) {
    const opts = parseOptions('--api-socket', socketText, ['path', 'fd']);
    if (opts.has('fd')) throw new CliError('chsim: --api-socket fd= is not simulated; pass path=');
    apiSocket = opts.get('path') ?? '';
  }
  if (!apiSocket.startsWith('/')) throw new CliError(`Error parsing --api-socket: chsim needs an absolute path, got "${apiSocket}"`);

  const hasPayload = values.has('--kernel') || values.has('--firmware');
  if (!hasPayload && VM_CONFIG_FLAGS.some((f) => values.has(f))) {
    throw new CliError('Error parsing config: Payload is missing: --kernel or --firmware is required with VM configuration options');
  }
  const restoreText = one('--restore');
  const restore = restoreText === undefined ? undefined : parseRestore(restoreText, versionNum);
  for (const flag of IGNORED_FLAGS) if (values.has(flag)) values.delete(flag);

  return {
    apiSocket,
    vmConfig: hasPayload ? buildVmConfig(values, versionNum) : undefined,
    restore,
    restoreIgnored: hasPayload && restore !== undefined,
    logFile: one('--log-file'),
    verbosity,
    noShutdown: bools.has('--no-shutdown'),
    sim,
    printVersion: false,
  };
}
