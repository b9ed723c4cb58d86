import type { InspectionEvent } from 'xstate';
import { MetricsSampler } from '../actors/metrics/sampler.ts';
import { createSupervisor, type Supervisor, type SupervisorOptions } from '../actors/supervisor.ts';
import type { AgentConfig } from '../core/config.ts';
import type { Logger } from '../core/log.ts';
import { createDrivers, type AgentDrivers, type FactoryOptions } from '../drivers/factory.ts';
import type { Drivers } from '../drivers/index.ts';

/**
 * The agent's runtime without its listener: real drivers per config, the
 * supervisor, and the metrics sampler fed by the supervisor's Running hooks.
 * bin/sandboxd.ts serves it; the integration tests drive it directly.
 */
export interface Runtime {
  supervisor: Supervisor;
  sampler: MetricsSampler;
  agent: AgentDrivers;
  /** Closes the store (the agent holds its database locked for its life). */
  close(): void;
}

export interface RuntimeOptions extends FactoryOptions {
  inspect?: (event: InspectionEvent) => void;
  /** Tests: sampling interval (default 1 s, lifecycle.md). */
  metricsIntervalMs?: number;
  /** Benchmarks and tests: wraps the driver bundle before the supervisor gets it (to time or observe calls). */
  wrapDrivers?: (drivers: Drivers) => Drivers;
  /** Tests: passed through to the supervisor. */
  supervisor?: Partial<Pick<SupervisorOptions, 'wrapStep' | 'stepBoundMs' | 'inactivityDelayMs' | 'gateUntilReconciled'>>;
}

export async function createRuntime(config: AgentConfig, log: Logger, opts: RuntimeOptions = {}): Promise<Runtime> {
  const agent = await createDrivers(config, log, opts);
  const sampler = new MetricsSampler({
    envd: agent.drivers.envd,
    log: log.child({ component: 'metrics' }),
    ...(opts.metricsIntervalMs === undefined ? {} : { intervalMs: opts.metricsIntervalMs }),
  });
  const drivers = opts.wrapDrivers?.(agent.drivers) ?? agent.drivers;
  const supervisor = createSupervisor({
    drivers,
    logger: log,
    slots: config.slots,
    defaultDiskSizeMB: config.defaultDiskSizeMB,
    vmSandboxDir: agent.vmSandboxDir,
    metrics: sampler,
    onRunning: (c) => {
      const vm = c.res.vm;
      if (vm === null) return;
      try {
        sampler.start(c.id, { pid: vm.pid, envdUrl: vm.envdUrl, vcpus: c.vcpus });
      } catch (err) {
        // Metrics are an extra: a sandbox runs without them rather than fail.
        log.warn({ sandboxId: c.id, err: (err as Error).message }, 'metrics sampler not started');
      }
    },
    // lifecycle.md: the sampler stops before a pause or destroy touches the VM.
    onLeaveRunning: (c) => sampler.stop(c.id),
    // Commands wait for start-up reconciliation (bin/sandboxd.ts runs it).
    gateUntilReconciled: true,
    ...(opts.inspect === undefined ? {} : { inspect: opts.inspect }),
    ...opts.supervisor,
  });
  supervisor.onState((change) => {
    if (change.status !== 'destroyed') return;
    sampler.stop(change.sandboxId);
    agent.forgetSandbox(change.sandboxId).catch((err: unknown) => log.warn({ sandboxId: change.sandboxId, err }, 'removing VMM logs failed'));
  });
  return {
    supervisor,
    sampler,
    agent,
    close: () => (agent.drivers.store as { close?: () => void }).close?.(),
  };
}
