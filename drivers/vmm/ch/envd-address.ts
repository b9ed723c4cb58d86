import { readFile } from 'node:fs/promises';
import { SandboxdError } from '../../../core/errors.ts';
import type { NetworkHandle } from '../../network/network.ts';
import { sleep } from '../../../core/sleep.ts';

/**
 * Where the host reaches a sandbox's envd. On a real host: the guest's port
 * through the slot's host IP. Under the simulator: a loopback URL the simulator
 * writes to `<api socket>.envd` once its stand-in envd listens.
 */

export const ENVD_PORT = 49983;

export function guestEnvdUrl(network: NetworkHandle): string {
  return `http://${network.hostIp}:${ENVD_PORT}`;
}

const LOOPBACK_URL = /^http:\/\/127\.0\.0\.1:\d{1,5}$/;

export async function waitSimEnvdUrl(
  file: string,
  opts: { timeoutMs: number; signal: AbortSignal; alive: () => Promise<boolean>; pollMs?: number },
): Promise<string> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const url = (await readFile(file, 'utf8').catch(() => '')).trim();
    if (LOOPBACK_URL.test(url)) return url;
    if (url !== '') throw new SandboxdError('operation_failed', `unexpected envd address in ${file}: ${JSON.stringify(url.slice(0, 80))}`);
    if (!(await opts.alive())) throw new SandboxdError('operation_failed', `the VMM exited before its envd address appeared in ${file}`);
    if (Date.now() > deadline) throw new SandboxdError('timeout', `no envd address in ${file} within ${opts.timeoutMs} ms`);
    await sleep(opts.pollMs ?? 20, opts.signal);
  }
}
