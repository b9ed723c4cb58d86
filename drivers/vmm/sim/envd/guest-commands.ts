import { GuestCorruptError, guestKv } from '../guest-state.ts';
import type { GuestMemory } from '../memory.ts';

// Commands the simulated guest runs itself instead of spawning a host process, so
// tests can prove that data lives in guest memory:
//   kv set KEY VALUE | kv get KEY | kv del KEY | kv list
// `get` prints the value (exit 1 when absent); `list` prints the store as JSON.

export interface CommandResult {
  stdout: string;
  stderr: string;
  code: number;
}

export const GUEST_COMMANDS = new Set(['kv']);

export function runGuestCommand(mem: GuestMemory | null, args: readonly string[]): CommandResult {
  if (!mem) return { stdout: '', stderr: 'kv: guest has no memory\n', code: 2 };
  const [op, key, value] = args;
  try {
    switch (op) {
      case 'set':
        if (key === undefined || value === undefined || args.length !== 3) break;
        guestKv.set(mem, key, value);
        return { stdout: '', stderr: '', code: 0 };
      case 'get': {
        if (key === undefined || args.length !== 2) break;
        const found = guestKv.get(mem, key);
        return found === undefined ? { stdout: '', stderr: `kv: ${key}: not set\n`, code: 1 } : { stdout: found, stderr: '', code: 0 };
      }
      case 'del':
        if (key === undefined || args.length !== 2) break;
        return guestKv.delete(mem, key) ? { stdout: '', stderr: '', code: 0 } : { stdout: '', stderr: `kv: ${key}: not set\n`, code: 1 };
      case 'list':
        return { stdout: JSON.stringify(guestKv.all(mem)), stderr: '', code: 0 };
    }
  } catch (err) {
    if (err instanceof GuestCorruptError || err instanceof RangeError) return { stdout: '', stderr: `kv: ${err.message}\n`, code: 2 };
    throw err;
  }
  return { stdout: '', stderr: 'usage: kv set KEY VALUE | kv get KEY | kv del KEY | kv list\n', code: 2 };
}
