import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Caller } from '../actors/api.ts';
import { isNameId } from '../core/ids.ts';
import { SUBPROTOCOL } from './protocol.ts';

/**
 * Who may connect. Tokens are configured only by their SHA-256 digest, so the
 * agent's config never holds a usable secret; the presented token is hashed and
 * compared digest-to-digest in constant time against every entry.
 */
export interface TokenEntry {
  /** Hex SHA-256 of the token (e.g. `printf %s TOKEN | sha256sum`). */
  sha256: string;
  /** The team the token acts for; null = admin (sees every team). */
  teamId: string | null;
}

export function sha256Hex(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export class TokenTable {
  private readonly entries: { digest: Buffer; caller: Caller }[];

  constructor(tokens: readonly TokenEntry[]) {
    this.entries = tokens.map((t, i) => {
      if (!/^[0-9a-fA-F]{64}$/.test(t.sha256)) throw new Error(`token entry ${i}: sha256 must be 64 hex digits`);
      if (t.teamId !== null && !isNameId(t.teamId)) throw new Error(`token entry ${i}: invalid team id`);
      return { digest: Buffer.from(t.sha256, 'hex'), caller: { teamId: t.teamId } };
    });
  }

  /** The caller a token belongs to, or null. Looks at every entry whatever matches, so timing says nothing. */
  resolve(token: string): Caller | null {
    const digest = createHash('sha256').update(token, 'utf8').digest();
    let found: Caller | null = null;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, digest) && found === null) found = entry.caller;
    }
    return found;
  }
}

/** The token of an upgrade request: `Authorization: Bearer X`, or the subprotocol pair `sandboxd.v1` + `bearer.X`. */
export function tokenFromRequest(req: IncomingMessage): string | null {
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(auth.trim());
    return m?.[1] ?? null;
  }
  const protocols = offeredProtocols(req);
  if (!protocols.includes(SUBPROTOCOL)) return null;
  const bearer = protocols.find((p) => p.startsWith('bearer.'));
  const token = bearer?.slice('bearer.'.length);
  return token !== undefined && token.length > 0 && token.length <= 512 ? token : null;
}

export function offeredProtocols(req: IncomingMessage): string[] {
  const header = req.headers['sec-websocket-protocol'];
  if (typeof header !== 'string') return [];
  return header.split(',').map((p) => p.trim()).filter((p) => p.length > 0);
}

/**
 * Browsers always send Origin; other clients usually do not. A request without
 * Origin is allowed (it cannot come from a web page), one with an Origin must
 * be on the list.
 */
export function originAllowed(req: IncomingMessage, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  return allowed.includes(origin);
}
