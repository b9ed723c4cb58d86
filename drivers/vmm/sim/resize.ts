import { apiFailure } from './api-error.ts';
import { PAGE_SIZE, type VmConfig } from './vm-config.ts';

// vm.resize (reference §1.3): vCPUs up to max_vcpus, RAM within the hotplug
// allowance once booted (only the stored config before), and the balloon target,
// which needs a balloon device. The 429 of a pending vCPU removal is not simulated.

export interface ResizeRequest {
  desired_vcpus?: number;
  desired_ram?: number;
  desired_balloon?: number;
}

export function resizedConfig(config: VmConfig, body: ResizeRequest, booted: boolean): VmConfig {
  const fail = (why: string) => apiFailure('Internal', 'The VM could not be resized', 'Error resizing VM', why);
  const next: VmConfig = structuredClone(config);
  if (body.desired_vcpus !== undefined) {
    if (body.desired_vcpus < 1 || body.desired_vcpus > config.cpus.max_vcpus) {
      throw fail(`Cannot set ${body.desired_vcpus} vCPUs (max ${config.cpus.max_vcpus})`);
    }
    next.cpus.boot_vcpus = body.desired_vcpus;
  }
  if (body.desired_ram !== undefined) {
    const limit = config.memory.size + (config.memory.hotplug_size ?? 0);
    const ram = body.desired_ram;
    if (booted && (ram % PAGE_SIZE !== 0 || ram < config.memory.size || ram > limit)) throw fail(`Cannot hotplug memory to ${ram} bytes`);
    // a booted VM records the hot-plugged amount (its simulated RAM does not grow)
    if (booted) next.memory.hotplugged_size = ram - config.memory.size;
    else next.memory.size = ram;
  }
  if (body.desired_balloon !== undefined) {
    if (!next.balloon) throw fail('No balloon device');
    if (body.desired_balloon >= next.memory.size) throw fail('Balloon size exceeds guest memory');
    next.balloon.size = body.desired_balloon;
  }
  return next;
}
