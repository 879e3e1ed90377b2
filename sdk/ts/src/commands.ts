// Programs the host runs for a step, limited to the step's `commands` grants (program, argument
// patterns, env names): an explicit environment, a working folder inside a mount, a timeout.
import * as wit from 'qodify:pipeline/commands@0.1.2';
import type { CommandError, OutputTarget } from 'qodify:pipeline/commands@0.1.2';

import { Cancelled, CommandFailed, Io, PermissionDenied, StepError } from './errors';

/** Where a stream of the program goes: the run log, nowhere, captured, or a file (guest path). */
export type Stdio = 'log' | 'discard' | 'capture' | { file: string };

/** How to run a program; by default stdout goes to the run log and stderr is captured. */
export interface RunOptions {
  /** Environment variables; each name must be granted. Values are never logged. */
  env?: Record<string, string>;
  /** Working folder, a guest path inside a mount (default: the first mount). */
  cwd?: string;
  stdout?: Stdio;
  stderr?: Stdio;
  /** Kill the program after this many milliseconds (never later than the step's deadline). */
  timeoutMs?: number;
}

/** How many trailing stderr lines `check` quotes. */
const STDERR_TAIL_LINES = 20;

/** How a program ended. */
export class CommandResult {
  constructor(
    /** The program's name, for messages. */
    readonly program: string,
    /** The exit code; `undefined` when a signal killed it. */
    readonly exitCode: number | undefined,
    /** Captured stdout (empty unless `capture`). */
    readonly stdout: Uint8Array,
    /** Captured stderr (empty unless `capture`). */
    readonly stderr: Uint8Array,
  ) {}

  /** True when the program exited with code 0. */
  get success(): boolean {
    return this.exitCode === 0;
  }

  /** Captured stdout as text. */
  stdoutText(): string {
    return new TextDecoder().decode(this.stdout);
  }

  /** Captured stderr as text. */
  stderrText(): string {
    return new TextDecoder().decode(this.stderr);
  }

  /** Itself on exit code 0, else throws `CommandFailed` quoting the last lines of stderr. */
  check(): this {
    if (this.success) return this;
    const status = this.exitCode === undefined ? 'was killed by a signal' : `exited with code ${this.exitCode}`;
    const lines = this.stderrText()
      .split('\n')
      .filter((l) => l.trim() !== '');
    const tail = lines.slice(-STDERR_TAIL_LINES);
    throw new CommandFailed(`${this.program} ${status}${tail.length > 0 ? `:\n${tail.join('\n')}` : ''}`);
  }
}

function target(s: Stdio): OutputTarget {
  return typeof s === 'string' ? { tag: s } : { tag: 'file', val: s.file };
}

function commandError(program: string, thrown: unknown): StepError {
  if (thrown instanceof StepError) return thrown;
  const payload = (thrown as { payload?: CommandError } | null)?.payload;
  if (payload === undefined) return new Io(`running ${program}: ${String(thrown)}`);
  switch (payload.tag) {
    case 'not-granted':
      return new PermissionDenied(`running ${program}: not granted: ${payload.val}`);
    case 'bad-path':
      return new PermissionDenied(`running ${program}: bad path: ${payload.val}`);
    case 'spawn-failed':
      return new CommandFailed(`running ${program}: could not start: ${payload.val}`);
    case 'timed-out':
      return new CommandFailed(`running ${program}: timed out`);
    case 'cancelled':
      return new Cancelled();
  }
}

/**
 * Runs a granted program and waits. A non-zero exit is not an error here: call `check()`.
 *
 * ```ts
 * commands.run('pg_dump', ['-Fc', 'shop'], { env: { PGPASSWORD: pw }, stdout: { file: '/out/db.dump' } }).check();
 * ```
 */
export function run(program: string, args: readonly string[] = [], options: RunOptions = {}): CommandResult {
  try {
    const out = wit.run({
      program,
      args: [...args],
      env: Object.entries(options.env ?? {}),
      cwd: options.cwd,
      stdout: target(options.stdout ?? 'log'),
      stderr: target(options.stderr ?? 'capture'),
      timeoutMs: options.timeoutMs === undefined ? undefined : BigInt(Math.max(0, Math.round(options.timeoutMs))),
    });
    return new CommandResult(program, out.exitCode, out.stdout, out.stderr);
  } catch (e) {
    throw commandError(program, e);
  }
}
