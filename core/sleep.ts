import { SandboxdError } from './errors.ts';

/** Resolves after `ms`; rejects with `cancelled` as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new SandboxdError('cancelled', 'cancelled'));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new SandboxdError('cancelled', 'cancelled'));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
