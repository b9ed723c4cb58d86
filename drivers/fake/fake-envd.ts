import { SandboxdError } from '../../core/errors.ts';
import type { CallOpts } from '../call.ts';
import type {
  EnvdDriver,
  EnvdInit,
  ExecRequest,
  ExecResult,
  GuestUsage,
  MemoryLoaderStatus,
} from '../envd/envd.ts';
import { type FakeHost, type FakeVm, PAGE, MIB, settleLoader } from './host.ts';

/**
 * The in-guest daemon of a fake VM, addressed as `fake://<sandboxId>`. It
 * answers only while its VM is Running (a paused guest answers nothing).
 * `exec` knows `kv set K V`, `kv get K` (on the guest memory that the VMM
 * fake snapshots and restores) and `echo`; every other command exits 127.
 */
export class FakeEnvd implements EnvdDriver {
  readonly #host: FakeHost;

  constructor(host: FakeHost) {
    this.#host = host;
  }

  async waitHealthy(url: string, budgetMs: number, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('envd.waitHealthy', idOf(url), signal);
    const vm = this.#host.vms.get(idOf(url) ?? '');
    // A real poll would spin until the budget runs out; the fake says so at once.
    if (vm === undefined || vm.entry.state !== 'Running') {
      const why = vm === undefined ? 'no VM' : `VM is ${vm.entry.state}`;
      throw new SandboxdError('timeout', `envd at ${url} not healthy within ${budgetMs} ms (${why})`);
    }
  }

  async version(url: string, { signal }: CallOpts): Promise<string> {
    await this.#host.faults.gate('envd.version', idOf(url), signal);
    this.#vm(url);
    return this.#host.envdVersion;
  }

  async init(url: string, init: EnvdInit, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('envd.init', idOf(url), signal);
    const vm = this.#vm(url);
    vm.envdInit = { ...init, ...(init.env === undefined ? {} : { env: { ...init.env } }) };
    // envd's /init resets the preload state: a loader started before init is forgotten.
    vm.loader = { state: 'idle', doneAt: Number.NaN };
  }

  async prepareSnapshot(url: string, { signal }: CallOpts): Promise<void> {
    await this.#host.faults.gate('envd.prepareSnapshot', idOf(url), signal);
    this.#vm(url);
  }

  async startMemoryLoader(url: string, { signal }: CallOpts): Promise<MemoryLoaderStatus> {
    await this.#host.faults.gate('envd.startMemoryLoader', idOf(url), signal);
    const vm = this.#vm(url);
    // Only the first call starts it; later ones report.
    if (vm.loader.state !== 'running' && vm.loader.state !== 'done') {
      const ms = this.#host.memoryLoaderMs;
      vm.loader = { state: 'running', doneAt: ms > 0 ? performance.now() + ms : Number.NaN };
    }
    return status(vm);
  }

  async memoryLoaderStatus(url: string, { signal }: CallOpts): Promise<MemoryLoaderStatus> {
    await this.#host.faults.gate('envd.memoryLoaderStatus', idOf(url), signal);
    const vm = this.#vm(url);
    settleLoader(vm, true);
    return status(vm);
  }

  async usage(url: string, { signal }: CallOpts): Promise<GuestUsage> {
    await this.#host.faults.gate('envd.usage', idOf(url), signal);
    this.#vm(url);
    return { ...this.#host.usage };
  }

  async exec(url: string, req: ExecRequest, { signal }: CallOpts): Promise<ExecResult> {
    await this.#host.faults.gate('envd.exec', idOf(url), signal);
    const vm = this.#vm(url);
    if (req.cmd === 'echo') return ok(`${req.args.join(' ')}\n`);
    if (req.cmd !== 'kv') return { exitCode: 127, stdout: '', stderr: `${req.cmd}: command not found\n` };
    const [op, key, value] = req.args;
    if (op === 'set' && key !== undefined && value !== undefined && req.args.length === 3) {
      vm.memory.set(key, value);
      return ok('');
    }
    if (op === 'get' && key !== undefined && req.args.length === 2) {
      const found = vm.memory.get(key);
      return found === undefined ? { exitCode: 1, stdout: '', stderr: '' } : ok(found);
    }
    return { exitCode: 2, stdout: '', stderr: 'usage: kv set KEY VALUE | kv get KEY\n' };
  }

  #vm(url: string): FakeVm {
    const id = idOf(url);
    const vm = id === undefined ? undefined : this.#host.vms.get(id);
    if (vm === undefined) throw new SandboxdError('operation_failed', `envd at ${url} unreachable: no VM`);
    if (vm.entry.state !== 'Running') {
      throw new SandboxdError('operation_failed', `envd at ${url} unreachable: VM is ${vm.entry.state}`);
    }
    return vm;
  }
}

const PREFIX = 'fake://';

function idOf(url: string): string | undefined {
  return url.startsWith(PREFIX) ? url.slice(PREFIX.length) : undefined;
}

function ok(stdout: string): ExecResult {
  return { exitCode: 0, stdout, stderr: '' };
}

function status(vm: FakeVm): MemoryLoaderStatus {
  const pages = vm.loader.state === 'done' ? (vm.config.memoryMB * MIB) / PAGE : 0;
  return { state: vm.loader.state, pages, error: vm.loader.error ?? null };
}
