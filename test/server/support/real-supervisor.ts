import { createSupervisor, type SupervisorOptions } from '../../../actors/supervisor.ts';
import { createFakeDrivers } from '../../../drivers/fake/index.ts';

/** The runtime's real supervisor over the in-memory fake drivers (seeded with system/base). */
export function realSupervisor(opts: Partial<SupervisorOptions> = {}) {
  const fake = createFakeDrivers();
  const supervisor = createSupervisor({ drivers: fake.drivers, ...opts });
  return { supervisor, ...fake };
}
