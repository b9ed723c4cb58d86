// Connect's streaming envelope (envd.md §4): 1 flag byte, a 4-byte big-endian
// length, then the message. Flag 0x02 marks the end-of-stream frame.

export const FLAG_COMPRESSED = 0x01;
export const FLAG_END_STREAM = 0x02;

export function envelope(flags: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(flags, 0);
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}

export interface Frame {
  flags: number;
  payload: Buffer;
}

/** Splits a whole body into frames; throws if a frame is cut short. */
export function parseFrames(body: Buffer): Frame[] {
  const frames: Frame[] = [];
  let pos = 0;
  while (pos < body.length) {
    if (body.length - pos < 5) throw new Error('truncated envelope header');
    const flags = body.readUInt8(pos);
    const length = body.readUInt32BE(pos + 1);
    if (body.length - pos - 5 < length) throw new Error('truncated envelope payload');
    frames.push({ flags, payload: body.subarray(pos + 5, pos + 5 + length) });
    pos += 5 + length;
  }
  return frames;
}
