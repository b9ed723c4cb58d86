// Small hand-written JSON checks for request bodies and config.json. The simulator
// avoids zod on purpose: loading it costs ~0.2 s, and the launcher must start fast.

export class ShapeError extends Error {}

export type JsonObject = Record<string, unknown>;

export function object(value: unknown, at: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ShapeError(`expected an object at ${at}`);
  return value as JsonObject;
}

export function optObject(value: unknown, at: string): JsonObject | undefined {
  return value === undefined || value === null ? undefined : object(value, at);
}

export function string(value: unknown, at: string): string {
  if (typeof value !== 'string') throw new ShapeError(`expected a string at ${at}`);
  return value;
}

export function optString(value: unknown, at: string): string | null {
  return value === undefined || value === null ? null : string(value, at);
}

export function int(value: unknown, at: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new ShapeError(`expected an integer at ${at}`);
  return value;
}

export function optInt(value: unknown, at: string): number | undefined {
  return value === undefined || value === null ? undefined : int(value, at);
}

export function uint(value: unknown, at: string): number {
  const n = int(value, at);
  if (n < 0) throw new ShapeError(`expected a non-negative integer at ${at}`);
  return n;
}

export function optUint(value: unknown, at: string): number | undefined {
  return value === undefined || value === null ? undefined : uint(value, at);
}

export function optBool(value: unknown, at: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new ShapeError(`expected a boolean at ${at}`);
  return value;
}

export function optArray(value: unknown, at: string): unknown[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw new ShapeError(`expected an array at ${at}`);
  return value;
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], at: string): T | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new ShapeError(`expected one of ${allowed.join(', ')} at ${at}`);
  }
  return value as T;
}
