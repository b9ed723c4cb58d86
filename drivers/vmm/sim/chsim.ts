// chsim: a stand-in `cloud-hypervisor` binary for hosts without one. It speaks CH's
// command line and REST API over the unix socket (reference
// cloud-hypervisor-dm-netns.md §1–2, §6) and serves a stand-in envd on loopback,
// whose URL it writes to `<api-socket>.envd`.
//
// WARNING: THE SIMULATOR ISOLATES NOTHING. Commands sent to its envd run as REAL
// host processes, with the simulator's user and privileges, in a scratch dir
// (`<api-socket>.guest` or --sim-state-dir). Never point it at untrusted callers.
//
// See README.md in this folder for the flags, the fault syntax and the violations log.

import { mkdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { ApiError } from './api-error.ts';
import { createApiServer } from './api-server.ts';
import { CliError } from './ch-options.ts';
import { parseCommandLine, type CommandLine } from './cli.ts';
import { loadExeca } from './envd/processes.ts';
import { EnvdServer } from './envd/server.ts';
import { FaultSpecError, parseFaults } from './faults.ts';
import { createSimLog, createViolationLog, type SimLog } from './sim-log.ts';
import { buildVersion, traitsOf } from './version.ts';
import { SimVmm } from './vmm.ts';

function writeAtomic(path: string, content: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, path);
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** v53: `<socket>.lock` held by a live CH means "socket in use"; otherwise a stale socket is removed. */
function takeSocketLock(socket: string): void {
  const lock = `${socket}.lock`;
  try {
    const holder = Number(readFileSync(lock, 'utf8'));
    if (Number.isInteger(holder) && holder !== process.pid && pidAlive(holder)) {
      throw new CliError(`Error starting HTTP server: socket in use: ${socket} is locked by process ${holder}`);
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
  }
  writeAtomic(lock, String(process.pid));
  removeQuietly(socket);
}

function main(cmd: CommandLine): void {
  const traits = traitsOf(cmd.sim.version);
  const log: SimLog = createSimLog(cmd.logFile, cmd.verbosity);
  const violations = createViolationLog(cmd.sim.violationsFile, log);
  const faults = parseFaults(cmd.sim.faults);
  process.umask(0o077);
  const socket = cmd.apiSocket;
  const envdFile = `${socket}.envd`;
  const stateDir = cmd.sim.stateDir ?? `${socket}.guest`;
  const ownsStateDir = cmd.sim.stateDir === undefined;

  if (cmd.restoreIgnored) {
    log.log('warn', '--restore is ignored because a payload (--kernel/--firmware) was given');
    violations.record('restore_with_payload', '--restore combined with a payload: CH boots the payload and ignores --restore');
  }
  if (traits.socketLock) takeSocketLock(socket);
  mkdirSync(stateDir, { recursive: true });

  const vmm = new SimVmm({ traits, log, violations, noShutdown: cmd.noShutdown, prefaultStartMs: cmd.sim.prefaultStartMs });
  const envd = new EnvdServer({ vmm, log, faults, stateDir });
  let api: Server | undefined;
  let socketBound = false;
  let exiting = false;

  const cleanup = (): void => {
    envd.close();
    api?.closeAllConnections();
    api?.close();
    if (socketBound) removeQuietly(socket);
    removeQuietly(envdFile);
    if (traits.socketLock) removeQuietly(`${socket}.lock`);
    if (cmd.sim.pidfile) removeQuietly(cmd.sim.pidfile);
    if (ownsStateDir) rmSync(stateDir, { recursive: true, force: true });
  };
  const exit = (code: number, why: string): void => {
    if (exiting) return;
    exiting = true;
    log.log(code === 0 ? 'info' : 'error', `exiting (${code}): ${why}`);
    vmm.delete();
    cleanup();
    process.exit(code);
  };
  const crash = (): void => {
    log.log('error', 'fault: crashing');
    envd.table.killAll(); // the guest dies with its VMM; socket, .envd and pidfile stay behind
    process.kill(process.pid, 'SIGKILL');
  };

  process.on('SIGTERM', () => exit(0, 'SIGTERM'));
  process.on('SIGINT', () => exit(0, 'SIGINT'));
  vmm.onExitRequest((code) => exit(code, 'guest powered off'));

  envd
    .listen(cmd.sim.envdListen)
    .then((url) => {
      writeAtomic(envdFile, url);
      log.log('info', `stand-in envd at ${url}`);
      api = createApiServer({ vmm, traits, log, violations, faults, onShutdown: () => exit(0, 'vmm.shutdown'), onCrash: crash });
      api.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE') violations.record('stale_socket', `${socket} exists; CH v${traits.version} cannot bind over it`);
        exit(1, `Error starting HTTP server: ${err.message}`);
      });
      api.listen(socket, () => {
        socketBound = true;
        if (cmd.sim.pidfile) writeAtomic(cmd.sim.pidfile, String(process.pid));
        try {
          if (cmd.vmConfig) vmm.createAndBoot(cmd.vmConfig);
          else if (cmd.restore) vmm.restore(cmd.restore);
          setImmediate(() => void loadExeca());
        } catch (err) {
          const msg = err instanceof ApiError ? err.chain.join(': ') : String(err);
          exit(1, cmd.vmConfig ? `Error booting VM: ${msg}` : `Error restoring VM: ${msg}`);
        }
      });
    })
    .catch((err: unknown) => exit(1, `stand-in envd cannot listen: ${String(err)}`));
}

try {
  const cmd = parseCommandLine(process.argv.slice(2), process.env);
  if (cmd.printVersion) {
    process.stdout.write(`cloud-hypervisor ${buildVersion(cmd.sim.version).build_version} (chsim)\n`);
  } else {
    main(cmd);
  }
} catch (err) {
  if (err instanceof CliError || err instanceof FaultSpecError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(err instanceof CliError ? err.exitCode : 1);
  }
  throw err;
}
