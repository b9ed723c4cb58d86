import { randomBytes } from 'node:crypto';
import { chmod, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SandboxdError } from '../core/errors.ts';
import { sha256Hex } from '../server/auth.ts';

/**
 * With no token configured, the agent would refuse everyone. On first start
 * it makes an admin token and keeps it in `<dataDir>/admin.token` (mode 0600);
 * later starts reuse it. Only its digest is held in memory; the token itself
 * never reaches a log line.
 */
export const ADMIN_TOKEN_FILE = 'admin.token';

export interface AdminToken {
  path: string;
  sha256: string;
  created: boolean;
}

export async function ensureAdminToken(dataDir: string): Promise<AdminToken> {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  const existing = await readFile(path, 'utf8').then((t) => t.trim(), () => null);
  if (existing !== null) {
    if (!/^[\x21-\x7e]{16,512}$/.test(existing)) {
      throw new SandboxdError('invalid_argument', `${path} does not hold a usable token; remove it to have a new one made`);
    }
    // Someone may have loosened it by hand: a token file readable by others is a shared secret.
    await chmod(path, 0o600);
    return { path, sha256: sha256Hex(existing), created: false };
  }
  const token = `sbx_${randomBytes(24).toString('base64url')}`;
  const temp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    // Created 0600 from the start, so there is no moment where others may read it.
    const file = await open(temp, 'wx', 0o600);
    try {
      await file.writeFile(`${token}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return { path, sha256: sha256Hex(token), created: true };
}
