import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// A tiny HTTP/1.1 server on a unix socket that keeps the raw bytes of each
// request, so tests can assert on exactly what the client put on the wire
// (Content-Length present, no body on bodyless PUTs, never chunked).

export interface RawRequest {
  raw: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface CannedResponse {
  status: number;
  body?: string;
  contentType?: string;
  /** Never answer (for timeout tests). */
  hang?: boolean;
}

export interface RawServer {
  socketPath: string;
  requests: RawRequest[];
  close(): Promise<void>;
}

const REASONS: Record<number, string> = { 200: 'OK', 204: 'No Content', 400: 'Bad Request', 404: 'Not Found', 409: 'Conflict', 429: 'Too Many Requests', 500: 'Internal Server Error' };

/** Listens on `at` when given (the caller owns its dir), else in a fresh temp dir. */
export async function startRawServer(handler: (req: RawRequest) => CannedResponse, at?: string): Promise<RawServer> {
  const dir = at === undefined ? mkdtempSync(join(tmpdir(), 'sandboxd-test-')) : undefined;
  const socketPath = at ?? join(dir as string, 'api.sock');
  const requests: RawRequest[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const lines = head.split('\r\n');
        const [method = '', path = ''] = (lines[0] ?? '').split(' ');
        const headers: Record<string, string> = {};
        for (const line of lines.slice(1)) {
          const i = line.indexOf(':');
          headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
        }
        const length = Number(headers['content-length'] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length).toString('utf8');
        const raw = buf.subarray(0, end + 4 + length).toString('latin1');
        buf = buf.subarray(end + 4 + length);
        const req = { raw, method, path, headers, body };
        requests.push(req);
        const res = handler(req);
        if (res.hang) return;
        const out = Buffer.from(res.body ?? '');
        // Like micro-http: 204 carries neither Content-Type nor Content-Length.
        const lines2 = [`HTTP/1.1 ${res.status} ${REASONS[res.status] ?? 'Status'}`, 'Server: Cloud Hypervisor API', 'Connection: keep-alive'];
        if (res.status !== 204) lines2.push(`Content-Type: ${res.contentType ?? 'application/json'}`, `Content-Length: ${out.length}`);
        sock.write(Buffer.concat([Buffer.from(lines2.join('\r\n') + '\r\n\r\n', 'latin1'), res.status === 204 ? Buffer.alloc(0) : out]));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return {
    socketPath,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}
