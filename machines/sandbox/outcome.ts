import { toErrorInfo, type ErrorCode, type ErrorInfo } from '../../core/errors.ts';
import type { SandboxContext, StepOutput } from './context.ts';

/** Merges what a step reports into the context; `null` in `res` means released. */
export function applyOutput(context: SandboxContext, output: StepOutput | undefined): Partial<SandboxContext> {
  if (output === undefined) return {};
  const { res, ...facts } = output;
  if (res === undefined) return facts;
  // A VM handed over or released settles whether the old one exited on its own: a new one has not.
  // (New keys before the spread: see initialContext.)
  const merged = { ...context.res, ...res };
  return 'vm' in res ? { vmExited: false, res: merged, ...facts } : { res: merged, ...facts };
}

const kept: ReadonlySet<ErrorCode> = new Set(['already_exists', 'not_found', 'cancelled', 'timeout', 'invalid_argument']);

/** A step's error as the operation reports it: typed codes pass through, the rest become operation_failed. */
export function stepFailure(step: string, error: unknown): ErrorInfo {
  const info = toErrorInfo(error);
  const code: ErrorCode = kept.has(info.code) ? info.code : 'operation_failed';
  return { code, message: `${step}: ${info.message}`, step };
}

