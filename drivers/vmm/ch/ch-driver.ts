import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { SandboxdError } from '../../../core/errors.ts';
import { sleep } from '../../../core/sleep.ts';
import { assertSandboxId } from '../../../core/ids.ts';
import { silentLogger, type Logger } from '../../../core/log.ts';
import type { CallOpts } from '../../call.ts';
import type { NetworkHandle } from '../../network/network.ts';
import type { RestoreSpec, VmExit, VmHandle, VmmDriver, VmSpec, VmState } from '../vmm.ts';
import { ChApiClient, ChApiError } from './api-client.ts';
import { bootArgs, checkNetwork, checkPath, inNamespace, ONDEMAND_MIN_VERSION, parseMajorVersion, restoreArgs } from './args.ts';
import { guestEnvdUrl, waitSimEnvdUrl } from './envd-address.ts';
import { prepareRestoreSource } from './restore-source.ts';
import {
  isVmmProcess, pollExit, raceSignal, readPidfile, removeFiles, settlesWithin, signalProcess, spawnDetached, tail, writePidfile,
  type VmmProcess,
} from './vmm-process.ts';

/**
 * VmmDriver over Cloud Hypervisor (or the bundled simulator, which speaks the same
 * command line and API). One detached VMM process per sandbox, found by its pidfile
 * and API socket under `runDir`, named after the (validated) sandbox id.
 */
export interface ChDriverOptions {
  /** The VMM binary; `cloud-hypervisor` on PATH by default, the simulator in tests and the embedded default. */
  binary?: string;
  kernelPath: string;
  kernelCmdline?: string;
  /** Pidfiles, API sockets and per-restore source dirs. */
  runDir: string;
  /** VMM log, serial console and stdout/stderr. */
  logDir: string;
  /** 'guest': envd at the slot's host IP; 'sim-port-file': the simulator writes its envd URL to `<socket>.envd`. */
  envdAddress?: 'guest' | 'sim-port-file';
  /** Bound for the VMM to answer on its socket and reach the expected state. */
  startTimeoutMs?: number;
  /** Time `vmm.shutdown` gets before SIGKILL. */
  shutdownGraceMs?: number;
  apiTimeoutMs?: number;
  /** Extra environment for the VMM process (the simulator reads CHSIM_VERSION, CHSIM_FAULTS). */
  env?: Record<string, string>;
  log?: Logger;
}

const DEFAULT_CMDLINE = 'console=ttyS0 reboot=k panic=1 root=/dev/vda rw';
const POLL_MS = 20;
const RESTORING_RETRY_MS = 100;

interface Tracked {
  proc: VmmProcess;
  destroying: boolean;
}

export class ChDriver implements VmmDriver {
  private readonly binary: string;
  private readonly opts: Required<Omit<ChDriverOptions, 'log'>>;
  private readonly log: Logger;
  private readonly tracked = new Map<string, Tracked>();
  private versionProbe: Promise<number | null> | undefined;

  constructor(options: ChDriverOptions) {
    this.binary = options.binary ?? 'cloud-hypervisor';
    this.opts = {
      binary: this.binary,
      kernelPath: options.kernelPath,
      kernelCmdline: options.kernelCmdline ?? DEFAULT_CMDLINE,
      runDir: checkPath('runDir', options.runDir),
      logDir: checkPath('logDir', options.logDir),
      envdAddress: options.envdAddress ?? 'guest',
      startTimeoutMs: options.startTimeoutMs ?? 30_000,
      shutdownGraceMs: options.shutdownGraceMs ?? 5_000,
      apiTimeoutMs: options.apiTimeoutMs ?? 10_000,
      env: options.env ?? {},
    };
    this.log = options.log ?? silentLogger;
  }

  socketPath(sandboxId: string): string {
    return join(this.opts.runDir, `${assertSandboxId(sandboxId)}.sock`);
  }

  private pidfile(id: string): string {
    return join(this.opts.runDir, `${id}.pid`);
  }

  private restoreDir(id: string): string {
    return join(this.opts.runDir, `${id}.restore`);
  }

  private api(id: string, timeoutMs?: number): ChApiClient {
    return new ChApiClient(this.socketPath(id), { defaultTimeoutMs: timeoutMs ?? this.opts.apiTimeoutMs });
  }

  private logFiles(id: string): { logFile: string; serialFile: string; outputFile: string } {
    return {
      logFile: join(this.opts.logDir, `${id}.vmm.log`),
      serialFile: join(this.opts.logDir, `${id}.serial.log`),
      outputFile: join(this.opts.logDir, `${id}.vmm.out`),
    };
  }

  /** The VMM's major version, from `--version`, asked once per driver (one binary); null when unknown. */
  async version(opts: CallOpts): Promise<number | null> {
    // Shared by concurrent callers, so one caller's abort must not cancel it: bounded by its own timeout instead.
    this.versionProbe ??= execa(this.binary, ['--version'], { timeout: 5000, reject: false, env: this.opts.env }).then(
      (r) => (r.exitCode === 0 ? parseMajorVersion(String(r.stdout)) : null),
      () => null,
    );
    const probe = this.versionProbe;
    const version = await raceSignal(probe, opts.signal);
    if (version === null && this.versionProbe === probe) this.versionProbe = undefined; // ask again next time
    return version;
  }

  async boot(spec: VmSpec, opts: CallOpts): Promise<VmHandle> {
    const id = assertSandboxId(spec.sandboxId);
    checkPath('sandboxDir', spec.sandboxDir);
    const files = this.logFiles(id);
    const args = bootArgs(
      { apiSocket: this.socketPath(id), logFile: files.logFile, serialFile: files.serialFile },
      { kernel: this.opts.kernelPath, cmdline: this.opts.kernelCmdline, diskPath: spec.diskPath, network: spec.network, vcpus: spec.vcpus, memoryMB: spec.memoryMB },
    );
    const existing = await this.reuse(id, spec.network, ['Running'], false, opts);
    if (existing) return existing;
    await mkdir(spec.sandboxDir, { recursive: true });
    return this.launch(id, spec.network, args, ['Running'], false, opts);
  }

  async restore(spec: RestoreSpec, opts: CallOpts): Promise<VmHandle> {
    const id = assertSandboxId(spec.sandboxId);
    checkPath('sandboxDir', spec.sandboxDir);
    checkPath('snapshotDir', spec.snapshotDir);
    checkPath('disk', spec.diskPath);
    checkNetwork(spec.network);
    const onDemand = spec.lazyMemory && ((await this.version(opts)) ?? 0) >= ONDEMAND_MIN_VERSION;
    const existing = await this.reuse(id, spec.network, ['Paused', 'Running'], onDemand, opts);
    if (existing) return existing;
    const files = this.logFiles(id);
    await mkdir(this.opts.runDir, { recursive: true, mode: 0o700 });
    // The snapshot's config.json names the disk, tap and serial file of the VM it was taken from;
    // a re-pointed copy makes it restorable into this sandbox (so sandboxDir only has to exist).
    await prepareRestoreSource(spec.snapshotDir, this.restoreDir(id), { diskPath: spec.diskPath, network: spec.network, serialFile: files.serialFile });
    await mkdir(spec.sandboxDir, { recursive: true });
    const args = restoreArgs({ apiSocket: this.socketPath(id), logFile: files.logFile, serialFile: files.serialFile }, this.restoreDir(id), onDemand);
    return this.launch(id, spec.network, args, ['Paused'], onDemand, opts);
  }

  /** Idempotence: a VMM already serving this sandbox in an expected state is kept (e.g. a step re-run after an agent restart). */
  private async reuse(id: string, network: NetworkHandle, states: VmState[], lazy: boolean, opts: CallOpts): Promise<VmHandle | null> {
    const found = await this.find(id, opts);
    if (!found) {
      // Nothing usable: clear what a dead or mute VMM of ours left (its process included) before starting anew.
      await this.teardown(id, opts, false);
      return null;
    }
    try {
      const { state } = await this.api(id, 3000).info({ signal: opts.signal });
      if (states.includes(state)) {
        this.track(id, found);
        return { sandboxId: id, pid: found.pid, apiSocket: this.socketPath(id), envdUrl: await this.envdUrl(id, network, opts), lazyMemory: lazy };
      }
    } catch (err) {
      if (err instanceof SandboxdError && err.code === 'cancelled') throw err;
    }
    this.log.warn({ sandboxId: id, pid: found.pid }, 'replacing a VMM left in an unexpected state');
    await this.teardown(id, opts, false);
    return null;
  }

  private async launch(id: string, network: NetworkHandle, args: string[], want: VmState[], lazy: boolean, opts: CallOpts): Promise<VmHandle> {
    const sock = this.socketPath(id);
    await mkdir(this.opts.runDir, { recursive: true, mode: 0o700 });
    await mkdir(this.opts.logDir, { recursive: true });
    // CH before v53 cannot bind over a stale socket file (§2.1).
    await removeFiles([sock, `${sock}.envd`]);
    const files = this.logFiles(id);
    const cmd = inNamespace(network.namespace, this.binary, args);
    const proc = spawnDetached({ file: cmd.file, args: cmd.args, env: this.opts.env, outputFile: files.outputFile });
    if (proc.pid < 0) {
      await proc.exited;
      throw new SandboxdError('operation_failed', `could not start ${cmd.file}: ${await tail(files.outputFile)}`, { step: 'vmm.spawn' });
    }
    const entry: Tracked = { proc, destroying: false };
    this.tracked.set(id, entry);
    try {
      await writePidfile(this.pidfile(id), proc.pid);
      await this.waitForState(id, entry, want, opts);
      const envdUrl = await this.envdUrl(id, network, opts, entry);
      this.log.info({ sandboxId: id, pid: proc.pid, lazy }, 'vmm started');
      return { sandboxId: id, pid: proc.pid, apiSocket: sock, envdUrl, lazyMemory: lazy };
    } catch (err) {
      // Whatever went wrong, the process we spawned must not outlive this call; a half-started VM gets no grace.
      await this.teardown(id, { signal: AbortSignal.timeout(15_000) }, false).catch((e: unknown) =>
        this.log.error({ sandboxId: id, err: e }, 'vmm cleanup after a failed start'),
      );
      throw err;
    }
  }

  /** Polls the API until the VM is in one of `want`; fails early, with the log tail, if the process dies. */
  private async waitForState(id: string, entry: Tracked, want: VmState[], opts: CallOpts): Promise<void> {
    const deadline = Date.now() + this.opts.startTimeoutMs;
    let exited = false;
    void entry.proc.exited.then(() => (exited = true));
    let last = 'no answer';
    const client = this.api(id, 2000);
    for (;;) {
      if (opts.signal.aborted) throw new SandboxdError('cancelled', `start of VMM ${id} cancelled`);
      if (exited) {
        const files = this.logFiles(id);
        const logs = [await tail(files.outputFile), await tail(files.logFile)].filter(Boolean).join('\n');
        throw new SandboxdError('operation_failed', `VMM ${id} exited during start-up${logs ? `: ${logs}` : ''}`, { step: 'vmm.start' });
      }
      try {
        const { state } = await client.info({ signal: opts.signal });
        if (want.includes(state)) return;
        last = `state ${state}`;
      } catch (err) {
        if (err instanceof SandboxdError && err.code === 'cancelled') throw err;
        last = err instanceof Error ? err.message : String(err);
      }
      if (Date.now() > deadline) {
        throw new SandboxdError('timeout', `VMM ${id} not ${want.join('/')} within ${this.opts.startTimeoutMs} ms (${last})`, { step: 'vmm.start' });
      }
      await sleep(POLL_MS, opts.signal);
    }
  }

  private async envdUrl(id: string, network: NetworkHandle, opts: CallOpts, entry?: Tracked): Promise<string> {
    if (this.opts.envdAddress === 'guest') return guestEnvdUrl(network);
    return waitSimEnvdUrl(`${this.socketPath(id)}.envd`, {
      timeoutMs: this.opts.startTimeoutMs,
      signal: opts.signal,
      alive: () => (entry ? this.isAlive(id, entry.proc) : Promise.resolve(true)),
    });
  }

  async info(sandboxId: string, opts: CallOpts): Promise<{ state: VmState }> {
    const { state } = await this.api(sandboxId).info({ signal: opts.signal });
    return { state };
  }

  async pause(sandboxId: string, opts: CallOpts): Promise<void> {
    await this.transition(sandboxId, 'vm.pause', 'Paused', opts);
  }

  async resume(sandboxId: string, opts: CallOpts): Promise<void> {
    await this.transition(sandboxId, 'vm.resume', 'Running', opts);
  }

  /** Act first; on a wrong-state error, a VM already in the target state counts as done. */
  private async transition(id: string, action: 'vm.pause' | 'vm.resume', target: VmState, opts: CallOpts): Promise<void> {
    const api = this.api(id);
    try {
      await api.action(action, { signal: opts.signal });
    } catch (err) {
      if (!(err instanceof ChApiError) || (err.kind !== 'invalid_state' && err.kind !== 'internal')) throw err;
      const { state } = await api.info({ signal: opts.signal });
      if (state !== target) throw err;
    }
  }

  async snapshot(sandboxId: string, destDir: string, opts: CallOpts): Promise<void> {
    checkPath('snapshot destination', destDir);
    const st = await stat(destDir).catch(() => null);
    if (!st?.isDirectory()) throw new SandboxdError('invalid_argument', `snapshot destination ${destDir} is not an existing directory`);
    const api = this.api(sandboxId);
    for (;;) {
      try {
        // Writing a full RAM image takes time: bound by the caller's signal, with a generous own limit.
        await api.snapshot(destDir, { signal: opts.signal, timeoutMs: 10 * 60_000 });
        return;
      } catch (err) {
        // v53 refuses until its background prefault of an on-demand restore is done; it has no event for that (§2.3).
        if (!(err instanceof ChApiError) || err.kind !== 'restoring') throw err;
        await sleep(RESTORING_RETRY_MS, opts.signal);
      }
    }
  }

  async setBalloon(sandboxId: string, bytes: number, opts: CallOpts): Promise<void> {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new SandboxdError('invalid_argument', `invalid balloon size: ${bytes}`);
    await this.api(sandboxId).resize({ desired_balloon: bytes }, { signal: opts.signal });
  }

  /** The VMM of `sandboxId` if one is alive: pidfile, /proc/PID/cmdline naming our socket, and an answer on it. */
  async find(sandboxId: string, opts: CallOpts): Promise<{ pid: number; apiSocket: string } | null> {
    const id = assertSandboxId(sandboxId);
    const sock = this.socketPath(id);
    const pid = this.tracked.get(id)?.proc.pid ?? (await readPidfile(this.pidfile(id)));
    if (pid === null || !(await isVmmProcess(pid, sock))) return null;
    try {
      await this.api(id, 2000).ping({ signal: opts.signal });
    } catch (err) {
      if (err instanceof SandboxdError && err.code === 'cancelled') throw err;
      return null;
    }
    return { pid, apiSocket: sock };
  }

  /** Takes over a VMM left running by a previous agent (crash recovery); null when none is alive. */
  async adopt(sandboxId: string, network: NetworkHandle, opts: CallOpts): Promise<VmHandle | null> {
    const found = await this.find(sandboxId, opts);
    if (!found) return null;
    this.track(sandboxId, found);
    // Whether memory was restored on demand is not recorded; callers that care run the loader anyway.
    return { sandboxId, pid: found.pid, apiSocket: found.apiSocket, envdUrl: await this.envdUrl(sandboxId, network, opts), lazyMemory: false };
  }

  private track(id: string, found: { pid: number }): void {
    const current = this.tracked.get(id);
    if (current && current.proc.pid === found.pid) return;
    this.tracked.set(id, { proc: { pid: found.pid, child: false, exited: pollExit(found.pid) }, destroying: false });
  }

  private async isAlive(id: string, proc: VmmProcess): Promise<boolean> {
    return isVmmProcess(proc.pid, this.socketPath(id));
  }

  async destroy(sandboxId: string, opts: CallOpts): Promise<void> {
    await this.teardown(assertSandboxId(sandboxId), opts, true);
  }

  private async teardown(id: string, opts: CallOpts, graceful: boolean): Promise<void> {
    const sock = this.socketPath(id);
    let entry = this.tracked.get(id);
    if (!entry) {
      const pid = await readPidfile(this.pidfile(id));
      if (pid !== null && (await isVmmProcess(pid, sock))) {
        entry = { proc: { pid, child: false, exited: pollExit(pid) }, destroying: false };
        this.tracked.set(id, entry);
      }
    }
    if (entry) {
      entry.destroying = true;
      await this.stopProcess(id, entry, opts, graceful);
      this.tracked.delete(id);
    }
    // `.lock` is CH v53's; `.envd` and `.guest` are the simulator's (a VMM killed by signal leaves them).
    await removeFiles([sock, `${sock}.envd`, `${sock}.lock`, `${sock}.guest`, this.pidfile(id), `${this.pidfile(id)}.tmp`, this.restoreDir(id)]);
  }

  /** vmm.shutdown (bounded), SIGKILL after the grace period, then wait until the pid is gone. */
  private async stopProcess(id: string, entry: Tracked, opts: CallOpts, graceful: boolean): Promise<void> {
    const { proc } = entry;
    // Gone already (a child is reaped by then): its pid may belong to someone else now, so no signal.
    if (await settlesWithin(proc.exited, 0)) return;
    if (!proc.child && !(await this.isAlive(id, proc))) return;
    const grace = this.opts.shutdownGraceMs;
    if (graceful) {
      try {
        await this.api(id, Math.min(grace, 3000)).action('vmm.shutdown', { signal: opts.signal });
      } catch (err) {
        if (err instanceof SandboxdError && err.code === 'cancelled') throw err;
        this.log.debug({ sandboxId: id, err }, 'vmm.shutdown failed; killing');
      }
      if (await settlesWithin(proc.exited, grace, opts.signal)) return;
    }
    // Recheck identity right before the kill: the pid must still be our VMM.
    if (proc.child || (await this.isAlive(id, proc))) signalProcess(proc.pid, 'SIGKILL');
    if (!(await settlesWithin(proc.exited, 10_000, opts.signal))) {
      throw new SandboxdError('timeout', `VMM ${id} (pid ${proc.pid}) did not exit after SIGKILL`, { step: 'vmm.destroy' });
    }
  }

  watchExit(sandboxId: string, onExit: (exit: VmExit) => void): () => void {
    const id = assertSandboxId(sandboxId);
    let active = true;
    const follow = (entry: Tracked): void => {
      void entry.proc.exited.then((exit) => {
        // An exit we asked for (destroy) is no crash.
        if (!active || entry.destroying) return;
        active = false;
        if (this.tracked.get(id) === entry) this.tracked.delete(id);
        this.log.warn({ sandboxId: id, ...exit }, 'vmm exited unexpectedly');
        onExit({ sandboxId: id, code: exit.code, signal: exit.signal });
      });
    };
    const entry = this.tracked.get(id);
    if (entry) follow(entry);
    else {
      // Not spawned by this agent: look for it by pidfile; nothing alive means it has already exited.
      void this.find(id, { signal: AbortSignal.timeout(5000) })
        .catch(() => null)
        .then((found) => {
          if (!found) {
            follow({ proc: { pid: -1, child: false, exited: Promise.resolve({ code: null, signal: null }) }, destroying: false });
            return;
          }
          this.track(id, found);
          const adopted = this.tracked.get(id);
          if (adopted) follow(adopted);
        });
    }
    return () => {
      active = false;
    };
  }
}
