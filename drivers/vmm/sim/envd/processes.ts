import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import type { ResultPromise } from 'execa';
import { ConnectError, type ProcessConfig, type ProcessEvent, type ProcessInfo, type Selector } from './messages.ts';

// Guest processes of the stand-in envd. THEY ARE REAL HOST PROCESSES: no namespace,
// no chroot, no user switch, no resource limit. The simulator isolates nothing; it
// only keeps the working directory inside its scratch dir (an absolute `cwd` is
// read relative to that dir), and the commands are the host's binaries.
// Each process gets its own process group so pause (SIGSTOP), resume (SIGCONT) and
// guest power-off (SIGKILL) reach its children too. A PTY is not a terminal here:
// `pty` processes run on pipes and their output is reported as `pty` data.

// execa takes ~0.2 s to load; the launcher must start fast, so it is loaded on
// first use (and warmed up in the background once the VM is up).
let execaModule: Promise<typeof import('execa')> | undefined;
export function loadExeca(): Promise<typeof import('execa')> {
  execaModule ??= import('execa');
  return execaModule;
}

// util-linux's setpriv sets PR_SET_PDEATHSIG before exec, so a guest process dies
// with the simulator even when the simulator is SIGKILLed (its own children are
// not covered: a clean exit kills whole process groups instead).
const SETPRIV = existsSync('/usr/bin/setpriv') ? '/usr/bin/setpriv' : undefined;

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Finds the binary the way execvp would, so a missing one is refused before spawning. */
function resolveCommand(cmd: string, cwd: string, pathVar: string): string | undefined {
  if (cmd.includes('/')) {
    const full = resolve(cwd, cmd);
    return isExecutable(full) ? full : undefined;
  }
  return pathVar.split(delimiter).filter(Boolean).map((dir) => join(dir, cmd)).find(isExecutable);
}

export interface GuestEnv {
  /** The scratch dir that stands for the guest's root. */
  root: string;
  user: string;
  workdir: string | undefined;
  env: Record<string, string>;
}

type Listener = (event: ProcessEvent) => void;

export interface GuestProcess {
  pid: number;
  tag: string | undefined;
  config: ProcessConfig;
  isPty: boolean;
  ended: boolean;
  subscribe(listener: Listener): () => void;
}

interface Entry extends GuestProcess {
  listeners: Set<Listener>;
  child: ResultPromise | undefined;
  stdinOpen: boolean;
}

const SIGNAL_STATUS: Record<string, string> = { SIGKILL: 'killed', SIGTERM: 'terminated', SIGINT: 'interrupt', SIGHUP: 'hangup' };

export function guestPath(root: string, path: string): string {
  return path.startsWith('/') ? join(root, path) : path;
}

export class ProcessTable {
  private readonly entries = new Map<number, Entry>();
  private frozen = false;
  private nextInternalPid = 5_000_000;

  /** Spawns a real process; resolves once it runs (spawn failures are invalid_argument). */
  async start(config: ProcessConfig, opts: { tag?: string; pty: boolean; stdin: boolean; lifetimeMs?: number }, guest: GuestEnv): Promise<GuestProcess> {
    if (opts.tag !== undefined && [...this.entries.values()].some((e) => e.tag === opts.tag)) {
      throw new ConnectError('already_exists', `process with tag ${opts.tag} already exists`);
    }
    const home = guest.user === 'root' ? join(guest.root, 'root') : join(guest.root, 'home', guest.user);
    mkdirSync(home, { recursive: true });
    const requested = config.cwd ?? guest.workdir;
    const cwd = requested === undefined ? home : resolve(home, guestPath(guest.root, requested));
    if (requested !== undefined && requested === guest.workdir) mkdirSync(cwd, { recursive: true });
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, USER: guest.user, ...guest.env, ...config.envs };
    if (opts.pty) env.TERM ??= 'xterm-256color';
    let cwdOk = false;
    try {
      cwdOk = statSync(cwd).isDirectory();
    } catch {
      cwdOk = false;
    }
    if (!cwdOk) throw new ConnectError('invalid_argument', `invalid cwd ${requested ?? cwd}: no such directory`);
    const binary = resolveCommand(config.cmd, cwd, env.PATH ?? '');
    if (!binary) throw new ConnectError('invalid_argument', `failed to start ${config.cmd}: executable not found`);
    const [file, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...config.args]] : [binary, config.args];
    const { execa } = await loadExeca();
    const child = execa(file, argv, {
      cwd,
      env,
      extendEnv: false,
      stdin: opts.stdin || opts.pty ? 'pipe' : 'ignore',
      buffer: false,
      reject: false,
      detached: true,
      ...(opts.lifetimeMs ? { timeout: opts.lifetimeMs } : {}),
    });
    // execa reports a failed spawn (missing binary, bad cwd) through its result, never as 'spawn'
    const spawned = await Promise.race([
      new Promise<undefined>((ok) => child.once('spawn', () => ok(undefined))),
      child.then((result) => (child.pid === undefined ? result : undefined)),
    ]);
    if (spawned !== undefined || child.pid === undefined) {
      const why = spawned?.shortMessage ?? 'no process';
      throw new ConnectError('invalid_argument', `failed to start ${config.cmd}: ${why}`);
    }
    const entry = this.track(config, opts, child.pid as number, child);
    if (this.frozen) this.signalGroup(entry.pid, 'SIGSTOP');
    const forward = (key: 'stdout' | 'stderr') => (chunk: Buffer) =>
      this.emit(entry, { data: opts.pty ? { pty: chunk } : { [key]: chunk } });
    child.stdout?.on('data', forward('stdout'));
    child.stderr?.on('data', forward('stderr'));
    child.stdin?.on('error', () => undefined); // a closed pipe is the guest's problem, not envd's
    const streamsDone = Promise.all(
      [child.stdout, child.stderr].map((s) => (s ? new Promise((r) => s.once('close', r)) : undefined)),
    );
    void Promise.all([child, streamsDone]).then(([result]) => {
      const signal = result.signal;
      this.finish(
        entry,
        signal
          ? { exitCode: -1, exited: false, status: `signal: ${SIGNAL_STATUS[signal] ?? signal.toLowerCase()}` }
          : { exitCode: result.exitCode ?? -1, exited: true, status: `exit status ${result.exitCode ?? -1}` },
      );
    });
    return entry;
  }

  /** A process handled inside the simulator (the `kv` guest command): start, output, end at once. */
  runInternal(config: ProcessConfig, tag: string | undefined, run: () => { stdout: string; stderr: string; code: number }): GuestProcess {
    const entry = this.track(config, { tag, pty: false, stdin: false }, this.nextInternalPid++, undefined);
    setImmediate(() => {
      const { stdout, stderr, code } = run();
      if (stdout) this.emit(entry, { data: { stdout: Buffer.from(stdout) } });
      if (stderr) this.emit(entry, { data: { stderr: Buffer.from(stderr) } });
      this.finish(entry, { exitCode: code, exited: true, status: `exit status ${code}` });
    });
    return entry;
  }

  private track(config: ProcessConfig, opts: { tag?: string | undefined; pty: boolean; stdin: boolean }, pid: number, child: ResultPromise | undefined): Entry {
    const listeners = new Set<Listener>();
    const entry: Entry = {
      pid,
      tag: opts.tag,
      config,
      isPty: opts.pty,
      ended: false,
      listeners,
      child,
      stdinOpen: opts.stdin || opts.pty,
      subscribe(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
    this.entries.set(pid, entry);
    return entry;
  }

  private emit(entry: Entry, event: ProcessEvent): void {
    for (const l of entry.listeners) l(event);
  }

  private finish(entry: Entry, end: { exitCode: number; exited: boolean; status: string }): void {
    entry.ended = true;
    this.entries.delete(entry.pid);
    this.emit(entry, { end });
    entry.listeners.clear();
  }

  find(sel: Selector): GuestProcess {
    return this.entry(sel);
  }

  private entry(sel: Selector): Entry {
    if (sel.pid !== undefined) {
      const e = this.entries.get(sel.pid);
      if (!e) throw new ConnectError('not_found', `process with pid ${sel.pid} not found`);
      return e;
    }
    const e = [...this.entries.values()].find((x) => x.tag === sel.tag);
    if (!e) throw new ConnectError('not_found', `process with tag ${sel.tag} not found`);
    return e;
  }

  list(): ProcessInfo[] {
    return [...this.entries.values()].map((e) => (e.tag === undefined ? { config: e.config, pid: e.pid } : { config: e.config, pid: e.pid, tag: e.tag }));
  }

  sendInput(sel: Selector, data: Buffer): void {
    const e = this.entry(sel);
    if (!e.stdinOpen || !e.child?.stdin) throw new ConnectError('failed_precondition', `process ${e.pid} has no open stdin`);
    e.child.stdin.write(data);
  }

  closeStdin(sel: Selector): void {
    const e = this.entry(sel);
    if (e.isPty) throw new ConnectError('failed_precondition', 'cannot close stdin of a PTY process; send 0x04 instead');
    e.stdinOpen = false;
    e.child?.stdin?.end();
  }

  signal(sel: Selector, signal: number): void {
    const e = this.entry(sel);
    const name = signal === 9 ? 'SIGKILL' : signal === 15 ? 'SIGTERM' : undefined;
    if (!name) throw new ConnectError('unimplemented', `signal ${signal} is not supported`);
    this.signalGroup(e.pid, name);
  }

  update(sel: Selector): void {
    this.entry(sel); // pipes have no window size: the resize is accepted and has no effect
  }

  private signalGroup(pid: number, signal: NodeJS.Signals): void {
    if (pid >= 5_000_000) return; // internal commands have no host process
    try {
      process.kill(-pid, signal);
    } catch {
      // the group is already gone
    }
  }

  /** The VM paused (true) or resumed (false): freeze or thaw every process group. */
  setFrozen(frozen: boolean): void {
    if (this.frozen === frozen) return;
    this.frozen = frozen;
    for (const e of this.entries.values()) this.signalGroup(e.pid, frozen ? 'SIGSTOP' : 'SIGCONT');
  }

  /** Guest power-off or VMM exit: every process dies. */
  killAll(): void {
    for (const e of this.entries.values()) this.signalGroup(e.pid, 'SIGKILL');
  }

  get size(): number {
    return this.entries.size;
  }
}
