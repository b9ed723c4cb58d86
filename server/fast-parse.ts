import { SANDBOX_ID } from '../core/ids.ts';
import { byId } from './schemas.ts';

// Fast paths for the hottest frames (sandbox.get, sandbox.ping and the other
// by-id calls): plain checks that accept only what the zod schemas accept and
// return what they return. They never reject: anything they are not sure of
// goes to zod, which gives the error its wording (test/server/fast-parse.test.ts
// compares both on fuzzed input).

export interface RequestEnvelope {
  jsonrpc: '2.0';
  id: string | number;
  method: string;
  params?: unknown;
}

const envelopeKeys = new Set(['jsonrpc', 'id', 'method', 'params']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `requestEnvelope`'s output for a valid envelope; null = let zod decide. */
export function fastEnvelope(msg: unknown): RequestEnvelope | null {
  if (!isPlainObject(msg)) return null;
  // for…in rather than Object.keys: no array per frame.
  for (const key in msg) if (!Object.hasOwn(msg, key) || !envelopeKeys.has(key)) return null;
  const { jsonrpc, id, method } = msg;
  if (jsonrpc !== '2.0' || typeof method !== 'string' || method.length > 128) return null;
  if (typeof id === 'string' ? id.length > 128 : typeof id !== 'number' || !Number.isFinite(id)) return null;
  return Object.hasOwn(msg, 'params') ? { jsonrpc, id: id as string | number, method, params: msg.params } : { jsonrpc, id: id as string | number, method };
}

/** `schema`'s output for valid params of a by-id method; undefined = let zod decide. */
export function fastParams(schema: unknown, params: unknown): unknown {
  if (schema !== byId || !isPlainObject(params)) return undefined;
  for (const key in params) if (key !== 'id' || !Object.hasOwn(params, key)) return undefined;
  const id = params.id;
  if (typeof id !== 'string' || id.length > 64 || !SANDBOX_ID.test(id)) return undefined;
  return { id };
}
