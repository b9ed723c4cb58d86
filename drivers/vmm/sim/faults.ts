// Fault injection for tests (env CHSIM_FAULTS or --sim-faults), entries separated by
// ';' or whitespace:
//   vm.pause=fail          every vm.pause fails with the version's 500 body
//   vm.resume=fail:2       only the 2nd vm.resume fails
//   vm.snapshot=hang       vm.snapshot never answers (until the process exits)
//   vm.info=delay:300      vm.info answers 300 ms late
//   crash-after=vm.pause   the process dies (SIGKILL, socket left behind) right after
//                          answering the 1st vm.pause; crash-after=vm.pause:2 the 2nd
//   envd./health=fail      the stand-in envd's GET /health answers 500 (any envd path)
// A name is an API endpoint (`vm.pause`) or `envd.` + an envd path.

export type FaultAction = { kind: 'fail' } | { kind: 'hang' } | { kind: 'delay'; ms: number };

interface Rule {
  name: string;
  action: FaultAction | 'crash';
  /** Only this call (1-based); undefined = every call. */
  nth: number | undefined;
}

export class FaultSpecError extends Error {}

export interface Faults {
  /** Counts the call and returns what to do with it, if anything. */
  onCall(name: string): FaultAction | undefined;
  /** True when the process must crash after answering this call (counted by onCall). */
  crashAfter(name: string): boolean;
}

function parseNth(text: string | undefined, entry: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new FaultSpecError(`bad call number in fault "${entry}"`);
  return n;
}

export function parseFaults(spec: string | undefined): Faults {
  const rules: Rule[] = [];
  for (const entry of (spec ?? '').split(/[;\s]+/).filter(Boolean)) {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new FaultSpecError(`fault "${entry}" is not NAME=ACTION`);
    const key = entry.slice(0, eq);
    const value = entry.slice(eq + 1);
    if (key === 'crash-after') {
      const [name, nth] = value.split(':');
      if (!name) throw new FaultSpecError(`fault "${entry}" names no call`);
      rules.push({ name, action: 'crash', nth: parseNth(nth, entry) });
      continue;
    }
    const [kind, arg] = value.split(':');
    if (kind === 'fail' || kind === 'hang') {
      rules.push({ name: key, action: { kind }, nth: parseNth(arg, entry) });
    } else if (kind === 'delay') {
      const ms = Number(arg);
      if (!Number.isFinite(ms) || ms < 0) throw new FaultSpecError(`fault "${entry}" needs delay:MS`);
      rules.push({ name: key, action: { kind: 'delay', ms }, nth: undefined });
    } else {
      throw new FaultSpecError(`fault "${entry}": unknown action "${value}" (fail, fail:N, hang, hang:N, delay:MS)`);
    }
  }

  const calls = new Map<string, number>();
  const matches = (rule: Rule, name: string): boolean =>
    rule.name === name && (rule.nth === undefined || rule.nth === (calls.get(name) ?? 0));

  return {
    onCall(name) {
      calls.set(name, (calls.get(name) ?? 0) + 1);
      for (const rule of rules) {
        if (rule.action !== 'crash' && matches(rule, name)) return rule.action;
      }
      return undefined;
    },
    crashAfter(name) {
      return rules.some((rule) => rule.action === 'crash' && matches(rule, name));
    },
  };
}
