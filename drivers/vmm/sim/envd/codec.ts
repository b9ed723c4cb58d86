import { fromJson, toJson } from './connect-json.ts';
import type { Method } from './messages.ts';
import { fromProto, toProto } from './proto.ts';

// The two codecs a Connect server negotiates by content type: JSON and binary
// protobuf (real Go hosts send binary by default, envd.md §7).

export interface Codec {
  name: 'json' | 'proto';
  decode(method: Method, payload: Buffer): unknown;
  encode(method: Method, message: unknown): Buffer;
}

export const jsonCodec: Codec = {
  name: 'json',
  decode(method, payload) {
    const text = payload.toString('utf8').trim();
    return fromJson(method, text === '' ? {} : JSON.parse(text));
  },
  encode(method, message) {
    return Buffer.from(JSON.stringify(toJson(method, message)));
  },
};

export const protoCodec: Codec = {
  name: 'proto',
  decode: (method, payload) => fromProto(method, payload),
  encode: (method, message) => toProto(method, message),
};

/** Picks the codec for a content type; `streaming` says whether the connect+ form is expected. */
export function codecFor(contentType: string | undefined, streaming: boolean): Codec | undefined {
  const base = (contentType ?? '').split(';')[0]?.trim().toLowerCase();
  const prefix = streaming ? 'application/connect+' : 'application/';
  if (base === `${prefix}json`) return jsonCodec;
  if (base === `${prefix}proto`) return protoCodec;
  return undefined;
}
