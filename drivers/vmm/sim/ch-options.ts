// CH's "key=value,key=value" option strings (its OptionParser): commas inside
// brackets do not split, unknown keys are errors, toggles are on/off/true/false and
// sizes take a K/M/G suffix (binary units).

export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

export function splitOptions(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '[') depth++;
    if (ch === ']') depth = Math.max(0, depth - 1);
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts.filter((p) => p.length > 0);
}

export function parseOptions(flag: string, text: string, allowed: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of splitOptions(text)) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (!allowed.includes(key)) throw new CliError(`Error parsing ${flag}: unknown option: ${key}`);
    out.set(key, value);
  }
  return out;
}

export function toggle(flag: string, key: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (value === 'on' || value === 'true' || value === '') return true;
  if (value === 'off' || value === 'false') return false;
  throw new CliError(`Error parsing ${flag}: invalid value for ${key}: "${value}" (expected on or off)`);
}

export function byteSize(flag: string, key: string, value: string): number {
  const m = /^(\d+)([KMG]?)$/.exec(value);
  if (!m) throw new CliError(`Error parsing ${flag}: invalid size for ${key}: "${value}"`);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2] as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * unit;
}

export function integer(flag: string, key: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new CliError(`Error parsing ${flag}: invalid number for ${key}: "${value}"`);
  return Number(value);
}
