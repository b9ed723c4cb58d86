import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readEnvdDefaults } from '../guest-state.ts';
import type { Faults } from '../faults.ts';
import type { SimLog } from '../sim-log.ts';
import type { SimVmm, VmState } from '../vmm.ts';
import { MemoryPreloader } from './preload.ts';
import { ProcessTable, type GuestEnv } from './processes.ts';
import { faultResponse, handleRest, notFound } from './rest.ts';
import { handleRpc, RPC_PREFIX } from './rpc.ts';

// The stand-in envd: HTTP on 127.0.0.1 (an ephemeral port), REST and Connect on one
// port like the real one. It answers only while the VM is Running. A paused or
// powered-off guest does not answer: requests are HELD (not refused) until the VM
// runs again, as a frozen guest's TCP peer would see it; callers need timeouts.
// Guest processes are stopped with the VM (SIGSTOP) and continued with it.

export interface EnvdServerDeps {
  vmm: SimVmm;
  log: SimLog;
  faults: Faults;
  /** The scratch dir standing for the guest's filesystem root. */
  stateDir: string;
}

const MAX_REQUEST = 64 * 1024 * 1024;

export class EnvdServer {
  readonly table = new ProcessTable();
  readonly preloader: MemoryPreloader;
  private readonly server: Server;
  private running = false;
  private waiters: (() => void)[] = [];

  constructor(private readonly deps: EnvdServerDeps) {
    this.preloader = new MemoryPreloader(() => deps.vmm.memory, () => this.running);
    deps.vmm.onStateChange((state) => this.onVmState(state));
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        deps.log.log('error', `envd: ${String(err)}`);
        if (!res.headersSent) {
          res.writeHead(500, { 'Content-Length': 0 });
          res.end();
        } else res.destroy();
      });
    });
  }

  private onVmState(state: VmState | null): void {
    this.running = state === 'Running';
    if (state === null) {
      // the guest is gone: its processes die and the loader's memory with them
      this.table.killAll();
      this.preloader.reset();
    } else {
      this.table.setFrozen(!this.running);
    }
    if (this.running) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
  }

  private whenRunning(): Promise<void> {
    return this.running ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }

  private guestEnv(): GuestEnv {
    const mem = this.deps.vmm.memory;
    const d = mem ? readEnvdDefaults(mem) : {};
    return { root: this.deps.stateDir, user: d.defaultUser ?? 'root', workdir: d.defaultWorkdir, env: d.envVars ?? {} };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_REQUEST) {
        res.writeHead(413, { 'Content-Length': 0 });
        return void res.end();
      }
      chunks.push(chunk);
    }
    await this.whenRunning();
    const path = (req.url ?? '').split('?')[0] ?? '';
    const fault = this.deps.faults.onCall(`envd.${path}`);
    if (fault?.kind === 'hang') return;
    if (fault?.kind === 'delay') await new Promise((r) => setTimeout(r, fault.ms));
    if (fault?.kind === 'fail') return faultResponse(res);
    const body = Buffer.concat(chunks);
    if (path.startsWith(RPC_PREFIX)) {
      return handleRpc(req, res, body, { table: this.table, guestEnv: () => this.guestEnv(), memory: () => this.deps.vmm.memory });
    }
    if (!handleRest(req, res, body, { vmm: this.deps.vmm, preloader: this.preloader })) notFound(res);
  }

  /** Listens (on loopback and an ephemeral port unless told otherwise) and returns the base URL. */
  listen(at: { host: string; port: number } = { host: '127.0.0.1', port: 0 }): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(at.port, at.host, () => {
        const { port } = this.server.address() as AddressInfo;
        resolve(`http://${at.host}:${port}`);
      });
    });
  }

  close(): void {
    this.table.killAll();
    this.preloader.reset();
    this.server.closeAllConnections();
    this.server.close();
  }
}
