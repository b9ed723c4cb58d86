import { z } from 'zod';
import { SandboxdError, type ErrorCode } from '../../core/errors.ts';

/**
 * The Connect protocol's JSON codec without generated code (envd.md reference §4):
 * 5-byte envelopes (flags, big-endian u32 length, JSON), the end-of-stream frame
 * that carries the only error a stream can report, and the mapping of Connect
 * error codes (or, without one, HTTP statuses) to this project's error codes.
 */

export const FLAG_COMPRESSED = 0x01;
export const FLAG_END_STREAM = 0x02;
/** Larger frames than this are refused rather than buffered. */
export const MAX_FRAME_BYTES = 16 << 20;

export interface Frame {
  flags: number;
  payload: Buffer;
}

export function encodeEnvelope(message: unknown, flags = 0): Buffer {
  const json = Buffer.from(JSON.stringify(message), 'utf8');
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(json.length, 1);
  return Buffer.concat([head, json]);
}

/** Splits a byte stream into frames, whatever the chunk boundaries. */
export class EnvelopeDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private readonly maxFrameBytes: number;

  constructor(maxFrameBytes = MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  push(chunk: Uint8Array): Frame[] {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    const frames: Frame[] = [];
    while (this.buf.length >= 5) {
      const flags = this.buf.readUInt8(0);
      const length = this.buf.readUInt32BE(1);
      if (length > this.maxFrameBytes) throw new ConnectError('resource_exhausted', `frame of ${length} bytes exceeds ${this.maxFrameBytes}`);
      if (this.buf.length < 5 + length) break;
      frames.push({ flags, payload: this.buf.subarray(5, 5 + length) });
      this.buf = this.buf.subarray(5 + length);
    }
    return frames;
  }

  /** Bytes of an incomplete frame still waiting; non-zero at stream end means truncation. */
  get pending(): number {
    return this.buf.length;
  }
}

const ConnectErrorBody = z.looseObject({
  code: z.string(),
  message: z.string().optional(),
  details: z.array(z.unknown()).optional(),
});

const EndStreamSchema = z.looseObject({
  error: ConnectErrorBody.optional(),
  metadata: z.record(z.string(), z.array(z.string())).optional(),
});

const CONNECT_CODES = [
  'canceled', 'unknown', 'invalid_argument', 'deadline_exceeded', 'not_found', 'already_exists', 'permission_denied',
  'resource_exhausted', 'failed_precondition', 'aborted', 'out_of_range', 'unimplemented', 'internal', 'unavailable',
  'data_loss', 'unauthenticated',
] as const;
export type ConnectCode = (typeof CONNECT_CODES)[number];

const TO_ERROR_CODE: Partial<Record<ConnectCode, ErrorCode>> = {
  canceled: 'cancelled',
  invalid_argument: 'invalid_argument',
  out_of_range: 'invalid_argument',
  deadline_exceeded: 'timeout',
  not_found: 'not_found',
  already_exists: 'already_exists',
  resource_exhausted: 'rate_limited',
};

/** A Connect error from envd; `connectCode` keeps the wire code, `code` is this project's. */
export class ConnectError extends SandboxdError {
  readonly connectCode: ConnectCode;
  constructor(connectCode: ConnectCode, message: string, cause?: unknown) {
    super(TO_ERROR_CODE[connectCode] ?? 'operation_failed', `envd: ${connectCode}: ${message}`, cause === undefined ? undefined : { cause });
    this.name = 'ConnectError';
    this.connectCode = connectCode;
  }
}

function asConnectCode(code: string): ConnectCode {
  return (CONNECT_CODES as readonly string[]).includes(code) ? (code as ConnectCode) : 'unknown';
}

/** The code to assume when a non-200 answer carries no Connect error (e.g. E2B's 401 with a numeric code). */
export function codeFromHttpStatus(status: number): ConnectCode {
  switch (status) {
    case 400:
      return 'internal';
    case 401:
      return 'unauthenticated';
    case 403:
      return 'permission_denied';
    case 404:
      return 'unimplemented';
    case 429:
    case 502:
    case 503:
    case 504:
      return 'unavailable';
    default:
      return 'unknown';
  }
}

/** Error of a non-200 response (unary failure, or a stream refused before it started). */
export function errorFromResponse(status: number, body: string): ConnectError {
  try {
    const parsed = ConnectErrorBody.safeParse(JSON.parse(body));
    if (parsed.success) return new ConnectError(asConnectCode(parsed.data.code), parsed.data.message ?? `HTTP ${status}`);
  } catch {
    // not JSON: infer from the status below
  }
  return new ConnectError(codeFromHttpStatus(status), `HTTP ${status}${body ? `: ${body.slice(0, 200)}` : ''}`);
}

/** Parses an end-of-stream payload; returns the stream's error, or null for a clean end. */
export function endStreamError(payload: Buffer): ConnectError | null {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    return new ConnectError('internal', 'end-of-stream frame is not JSON', err);
  }
  const parsed = EndStreamSchema.safeParse(json);
  if (!parsed.success) return new ConnectError('internal', 'malformed end-of-stream frame');
  const error = parsed.data.error;
  return error ? new ConnectError(asConnectCode(error.code), error.message ?? error.code) : null;
}

/** Parses a message frame as JSON; compressed frames cannot occur since no encoding is offered. */
export function messageOf(frame: Frame): unknown {
  if (frame.flags & FLAG_COMPRESSED) throw new ConnectError('internal', 'compressed frame received though no encoding was offered');
  try {
    return JSON.parse(frame.payload.toString('utf8'));
  } catch (err) {
    throw new ConnectError('internal', 'message frame is not JSON', err);
  }
}
