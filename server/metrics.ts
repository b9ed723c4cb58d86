import { Counter, Gauge, Registry } from 'prom-client';
import type { SupervisorApi } from '../actors/api.ts';
import { OperationHistogram } from './op-histogram.ts';
import { sandboxStatuses } from './schemas.ts';

/** The server's Prometheus metrics, in a registry of its own (never the global one). */
export interface ServerMetrics {
  registry: Registry;
  operationSeconds: OperationHistogram;
  errors: Counter<'code'>;
  connections: Gauge;
  connectionsClosed: Counter<'reason'>;
  messagesIn: Counter;
  messagesOut: Counter<'kind'>;
  notificationsCoalesced: Counter;
  /** Frames in and out, counted here as they pass and added to messagesIn / messagesOut at each scrape. */
  frames: { in: number; reply: number; notification: number };
}

export function createMetrics(supervisor: Pick<SupervisorApi, 'info'>): ServerMetrics {
  const registry = new Registry();
  new Gauge({
    name: 'sandboxd_sandboxes',
    help: 'Sandboxes by status',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      // Read at scrape time so the figure is never stale.
      const counts = supervisor.info().sandboxes;
      for (const status of sandboxStatuses) this.set({ status }, counts[status] ?? 0);
    },
  });
  new Gauge({
    name: 'sandboxd_orphans_removed',
    help: 'What start-up reconciliation found on the host that no sandbox owned, and removed, by kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      for (const [kind, n] of Object.entries(supervisor.info().reconciled?.orphansRemoved ?? {})) this.set({ kind }, n);
    },
  });
  const frames = { in: 0, reply: 0, notification: 0 };
  return {
    registry,
    frames,
    operationSeconds: new OperationHistogram(
      'sandboxd_operation_duration_seconds',
      'Duration of API calls by method and outcome (ok or error code)',
      [0.001, 0.005, 0.02, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registry,
    ),
    errors: new Counter({ name: 'sandboxd_errors_total', help: 'Error replies by code', labelNames: ['code'], registers: [registry] }),
    connections: new Gauge({ name: 'sandboxd_connections', help: 'Open WebSocket connections', registers: [registry] }),
    connectionsClosed: new Counter({
      name: 'sandboxd_connections_closed_total',
      help: 'Connections closed by the agent, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    messagesIn: new Counter({
      name: 'sandboxd_messages_in_total',
      help: 'Frames received',
      registers: [registry],
      collect() {
        this.inc(frames.in);
        frames.in = 0;
      },
    }),
    messagesOut: new Counter({
      name: 'sandboxd_messages_out_total',
      help: 'Frames sent, by kind (reply or notification)',
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        for (const kind of ['reply', 'notification'] as const) {
          if (frames[kind] > 0) this.inc({ kind }, frames[kind]);
          frames[kind] = 0;
        }
      },
    }),
    notificationsCoalesced: new Counter({
      name: 'sandboxd_notifications_coalesced_total',
      help: 'sandbox.state notifications replaced by a newer one while the reader was slow',
      registers: [registry],
    }),
  };
}
