// Typed step failures. A plugin throws one of these classes (or lets the SDK map what it threw);
// `defineStep` turns it into the WIT `step-error` the host maps onto run errors.
import type { ErrorKind, StepError as WitStepError } from 'qodify:pipeline/types@0.1.2';

export type { ErrorKind };

/** A typed step failure: a kind the host maps onto run errors and a message saying what to do. */
export class StepError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string) {
    super(message);
    this.kind = kind;
    this.name = 'StepError';
  }

  /** Prefixes the message with what was being done: `context: message`, keeping the kind. */
  context(context: string): StepError {
    return new StepError(this.kind, `${context}: ${this.message}`);
  }

  /** The WIT `step-error` record. */
  toWit(): WitStepError {
    return { kind: this.kind, message: this.message };
  }
}

/** The step's config is wrong; fix the pipeline. */
export class InvalidConfig extends StepError {
  constructor(message: string) {
    super('invalid-config', message);
  }
}

/** A file or folder the step needs is missing. */
export class NotFound extends StepError {
  constructor(message: string) {
    super('not-found', message);
  }
}

/** The step tried something its grants do not allow. */
export class PermissionDenied extends StepError {
  constructor(message: string) {
    super('permission-denied', message);
  }
}

/** An I/O error while reading or writing. */
export class Io extends StepError {
  constructor(message: string) {
    super('io', message);
  }
}

/** A host command failed (non-zero exit, timeout). */
export class CommandFailed extends StepError {
  constructor(message: string) {
    super('command-failed', message);
  }
}

/** The run was cancelled; the step stopped early. */
export class Cancelled extends StepError {
  constructor(message = 'the run was cancelled') {
    super('cancelled', message);
  }
}

/** Anything else: a bug in the plugin. */
export class Internal extends StepError {
  constructor(message: string) {
    super('internal', message);
  }
}

const KINDS: readonly ErrorKind[] = [
  'invalid-config',
  'not-found',
  'permission-denied',
  'io',
  'command-failed',
  'cancelled',
  'internal',
];

/** True for a WIT error kind. */
export function isErrorKind(value: unknown): value is ErrorKind {
  return typeof value === 'string' && (KINDS as readonly string[]).includes(value);
}

/**
 * Whatever a step threw, as a `StepError`: SDK errors stay as they are, a plain `{ kind, message }`
 * keeps its kind, anything else (a `TypeError`, a thrown string) is `internal` with its text.
 */
export function toStepError(thrown: unknown): StepError {
  if (thrown instanceof StepError) return thrown;
  if (typeof thrown === 'object' && thrown !== null) {
    const { kind, message } = thrown as { kind?: unknown; message?: unknown };
    if (isErrorKind(kind) && typeof message === 'string') return new StepError(kind, message);
  }
  if (thrown instanceof Error) {
    return new Internal(`${thrown.name}: ${thrown.message}${stackTail(thrown)}`);
  }
  return new Internal(`the step threw ${describe(thrown)}`);
}

/** The first frame of a stack, so an internal error says where it came from. */
function stackTail(error: Error): string {
  const frame = error.stack?.split('\n').find((line) => line.trim() !== '');
  return frame ? ` (at ${frame.trim()})` : '';
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(value);
  } catch {
    return String(value);
  }
}
