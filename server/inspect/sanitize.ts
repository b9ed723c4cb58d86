/**
 * Makes an event payload safe and small enough to show on the inspector page:
 * keys that name secrets (env, tokens, passwords, keys, cookies, auth) are
 * dropped, strings that look like credentials are masked, long strings are cut,
 * depth and breadth are bounded, errors become `{name, message}` (no stack).
 */

const SECRET_KEY = /env|token|secret|passw|auth|cookie|credential|private|apikey|(^|[_-])key$|signature/i;
/** A bearer token, a JWT-ish or a long unbroken random-looking string. */
const SECRET_VALUE = /^(bearer\s|sbxt-|eyJ)|^(?=.*\d)(?=.*[a-zA-Z])[A-Za-z0-9_+=.~-]{40,}$/i;
const MAX_DEPTH = 4;
const MAX_KEYS = 24;
const MAX_ITEMS = 16;
const MAX_STRING = 200;
export const REDACTED = '[redacted]';

export function sanitize(value: unknown, depth = 0): unknown {
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'string') return cleanString(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return undefined;
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: cleanString(value.message) };
    const code = (value as { code?: unknown }).code;
    if (typeof code === 'string') out.code = code;
    return out;
  }
  if (value instanceof Date) return value.toISOString();
  if (depth >= MAX_DEPTH) return '…';
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_ITEMS).map((v) => sanitize(v, depth + 1));
    if (value.length > MAX_ITEMS) items.push(`… ${value.length - MAX_ITEMS} more`);
    return items;
  }
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === 'function' || v === undefined) continue;
    if (n++ >= MAX_KEYS) {
      out['…'] = 'more keys';
      break;
    }
    out[key] = SECRET_KEY.test(key) ? REDACTED : sanitize(v, depth + 1);
  }
  return out;
}

function cleanString(s: string): string {
  if (SECRET_VALUE.test(s)) return REDACTED;
  return s.length > MAX_STRING ? `${s.slice(0, MAX_STRING)}…` : s;
}
