// The Cloud Hypervisor releases whose API differences the simulator reproduces
// (reference §1.2, §2.1, §3). Every version-dependent branch reads one of these flags.

export const SIM_VERSIONS = [40, 47, 52, 53] as const;
export type SimVersion = (typeof SIM_VERSIONS)[number];
export const DEFAULT_SIM_VERSION: SimVersion = 52;

export interface VersionTraits {
  version: SimVersion;
  /** v47+: error bodies are a JSON array of the error chain; before, plain text. */
  jsonErrorChain: boolean;
  /** v53: VmNotCreated/VmMissingConfig → 404, ConfigValidation → 400/409; before, all 500. */
  mappedStatusCodes: boolean;
  /** v52+: RestoreConfig knows memory_restore_mode and resume; --no-shutdown exists. */
  restoreModes: boolean;
  /** v52+: memory-ranges of shared (memfd) RAM is written sparsely. */
  sparseMemory: boolean;
  /** v53: `<socket>.lock`, stale socket removed; before, bind fails on a stale file. */
  socketLock: boolean;
  /** v53: background uffd prefault and the VmRestoring snapshot guard. */
  restoringGuard: boolean;
}

export function isSimVersion(n: number): n is SimVersion {
  return (SIM_VERSIONS as readonly number[]).includes(n);
}

export function traitsOf(version: SimVersion): VersionTraits {
  return {
    version,
    jsonErrorChain: version >= 47,
    mappedStatusCodes: version >= 53,
    restoreModes: version >= 52,
    sparseMemory: version >= 52,
    socketLock: version >= 53,
    restoringGuard: version >= 53,
  };
}

export function buildVersion(version: SimVersion): { build_version: string; version: string } {
  return { build_version: `v${version}.0`, version: `${version}.0.0` };
}
