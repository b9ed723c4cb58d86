/** What a sandbox is, as its record, its view and its machine's input all name it. */
export interface SandboxSpec {
  id: string;
  teamId: string;
  templateId: string;
  vcpus: number;
  memoryMB: number;
  diskSizeMB: number;
  /** 0: no inactivity limit; otherwise at least 60. */
  timeoutSec: number;
}
