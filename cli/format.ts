import type { AgentInfo, SandboxView, TemplateView } from '../actors/api.ts';
import type { StateNotice } from '../server/protocol.ts';

// Human renderings of protocol results. --json bypasses all of this.

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function sandboxTable(sandboxes: SandboxView[]): string {
  if (sandboxes.length === 0) return 'no sandboxes\n';
  return table(
    ['ID', 'TEAM', 'TEMPLATE', 'STATUS', 'VCPUS', 'MEMORY', 'HOST IP', 'CREATED'],
    sandboxes.map((s) => [s.id, s.teamId, s.templateId, s.status, String(s.vcpus), `${s.memoryMB} MiB`, s.hostIp ?? '-', s.createdAt]),
  );
}

export function sandboxDetail(s: SandboxView): string {
  const rows: [string, string][] = [
    ['id', s.id], ['team', s.teamId], ['template', s.templateId], ['status', s.status], ['step', s.step],
    ['vcpus', String(s.vcpus)], ['memory', `${s.memoryMB} MiB`], ['disk', `${s.diskSizeMB} MiB`],
    ['timeout', s.timeoutSec === 0 ? 'none' : `${s.timeoutSec} s`], ['slot', s.slot === null ? '-' : String(s.slot)],
    ['host ip', s.hostIp ?? '-'], ['created', s.createdAt], ['last active', s.lastActiveAt],
  ];
  for (const [k, v] of Object.entries(s.metadata)) rows.push([k, v]);
  if (s.error !== null) rows.push(['error', `${s.error.code}: ${s.error.message}${s.error.step === undefined ? '' : ` (step ${s.error.step})`}`]);
  return keyValues(rows);
}

export function templateTable(templates: TemplateView[]): string {
  if (templates.length === 0) return 'no templates\n';
  return table(['TEAM', 'TEMPLATE', 'KIND', 'SIZE'], templates.map((t) => [t.teamId, t.templateId, t.kind, bytes(t.sizeBytes)]));
}

export function templateDetail(t: TemplateView): string {
  return keyValues([['team', t.teamId], ['template', t.templateId], ['kind', t.kind], ['size', bytes(t.sizeBytes)]]);
}

export function agentInfo(info: AgentInfo): string {
  const counts = Object.entries(info.sandboxes).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
  return keyValues([
    ['version', info.version], ['draining', info.draining ? 'yes' : 'no'], ['sandboxes', counts],
    ['slots', `${info.capacity.slotsInUse}/${info.capacity.slots} in use`],
    ['disk backend', info.backends.disk], ['network backend', info.backends.network],
  ]);
}

/** One line of `watch`: time, sandbox, status, step. */
export function stateLine(n: StateNotice): string {
  return `${n.at}  ${n.sandboxId}  ${n.status.padEnd(12)} ${shortStep(n.status, n.step)}`;
}

/** "creating.provision.disk.acquireLoop+creating.provision.network.done" → "provision.disk.acquireLoop + provision.network.done". */
export function shortStep(status: string, step: string): string {
  return step
    .split('+')
    .filter((part) => part !== status)
    .map((part) => (part.startsWith(`${status}.`) ? part.slice(status.length + 1) : part))
    .join(' + ');
}

function keyValues(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${(k + ':').padEnd(width + 1)} ${v}`).join('\n') + '\n';
}

export function metricTable(points: { ts: number; cpuPct: number; memBytes: number; diskBytes: number }[]): string {
  if (points.length === 0) return 'no samples (the sandbox is not running, or was just started)\n';
  return table(
    ['TIME', 'CPU %', 'MEMORY', 'DISK'],
    points.map((p) => [new Date(p.ts).toISOString(), p.cpuPct.toFixed(1), bytes(p.memBytes), bytes(p.diskBytes)]),
  );
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
