// What a step is told when it starts (customer, run, params, mounts, earlier outputs) and its
// channel back to the host (progress, logs, cancellation).
import { report as witReport, log as witLog } from 'qodify:pipeline/progress@0.1.2';
import type { Level } from 'qodify:pipeline/progress@0.1.2';
import { isCancelled as witIsCancelled } from 'qodify:pipeline/cancellation@0.1.2';
import type { Artifact, StepContext } from 'qodify:pipeline/types@0.1.2';

import { Cancelled, InvalidConfig } from './errors';

/** Log levels. */
export type LogLevel = Level;

/** A param's value: `bool` → boolean, `int` → bigint, `string`/`enum` → string. */
export type ParamValue = boolean | bigint | string;

/** A folder the pipeline granted to this step, as the guest sees it. */
export interface Mount {
  /** Absolute guest path, e.g. `/src`. */
  readonly guestPath: string;
  /** True when the step may create, write, rename and delete inside it. */
  readonly writable: boolean;
}

/** What an earlier step of the same run returned (after the host checked it). */
export interface PreviousStep {
  readonly step: string;
  /** Its artifacts; `path` is the guest path that step saw. */
  readonly artifacts: readonly Artifact[];
  /** Its key/value outputs. */
  readonly outputs: ReadonlyMap<string, string>;
}

/** Where progress, logs and cancellation go: the host, or a recording stand-in in unit tests. */
export interface ContextHost {
  report(percent: number, message: string): void;
  log(level: LogLevel, message: string): void;
  isCancelled(): boolean;
}

const witHost: ContextHost = { report: witReport, log: witLog, isCancelled: witIsCancelled };

/** The fields a test context may set; everything else gets a default. */
export interface TestContextInit {
  customer?: { id: string; domain: string };
  runId?: string;
  runTimestamp?: string;
  stepId?: string;
  params?: Record<string, ParamValue>;
  mounts?: Mount[];
  previous?: PreviousStep[];
}

/** What a test context recorded. */
export class Recorder implements ContextHost {
  readonly reports: Array<[number, string]> = [];
  readonly logs: Array<[LogLevel, string]> = [];
  cancelled = false;
  report(percent: number, message: string): void {
    this.reports.push([percent, message]);
  }
  log(level: LogLevel, message: string): void {
    this.logs.push([level, message]);
  }
  isCancelled(): boolean {
    return this.cancelled;
  }
  /** The messages logged at `level`. */
  logged(level: LogLevel): string[] {
    return this.logs.filter(([l]) => l === level).map(([, m]) => m);
  }
}

/** Everything about the current step, plus progress, logging and cancellation. */
export class Context {
  private constructor(
    readonly customer: { readonly id: string; readonly domain: string },
    readonly runId: string,
    /** The run's start time as `YYYYMMDD-HHMMSS` (UTC). */
    readonly runTimestamp: string,
    readonly stepId: string,
    readonly params: ReadonlyMap<string, ParamValue>,
    readonly mounts: readonly Mount[],
    readonly previous: readonly PreviousStep[],
    private readonly host: ContextHost,
  ) {}

  /** The context the host gave (the `config` field is the step's, parsed elsewhere). */
  static fromWit(ctx: StepContext): Context {
    return new Context(
      { id: ctx.customer.id, domain: ctx.customer.domain },
      ctx.runId,
      ctx.runTimestamp,
      ctx.stepId,
      new Map(ctx.params.map((p) => [p.name, p.value.val])),
      ctx.mounts.map((m) => ({ guestPath: m.guestPath, writable: m.writable })),
      ctx.previous.map((s) => ({
        step: s.step,
        artifacts: s.artifacts,
        outputs: new Map(s.outputs.map((o) => [o.key, o.value])),
      })),
      witHost,
    );
  }

  /**
   * A context for unit tests of a plugin's logic under Node: customer `1`/`example.com`, run
   * `test-run` at `20250101-000000`, step `test-step` unless `init` says otherwise. Progress and
   * logs go to `recorder` (pass one to check them); cancel with `recorder.cancelled = true`.
   */
  static forTest(init: TestContextInit = {}, recorder: Recorder = new Recorder()): Context {
    return new Context(
      init.customer ?? { id: '1', domain: 'example.com' },
      init.runId ?? 'test-run',
      init.runTimestamp ?? '20250101-000000',
      init.stepId ?? 'test-step',
      new Map(Object.entries(init.params ?? {})),
      init.mounts ?? [],
      init.previous ?? [],
      recorder,
    );
  }

  /** The param `name`, whatever its type. */
  param(name: string): ParamValue | undefined {
    return this.params.get(name);
  }

  /** The `bool` param `name`; `undefined` when absent or of another type. */
  paramBool(name: string): boolean | undefined {
    const v = this.params.get(name);
    return typeof v === 'boolean' ? v : undefined;
  }

  /** The `int` param `name` as a number; throws `InvalidConfig` when it is not a safe integer. */
  paramInt(name: string): number | undefined {
    const v = this.params.get(name);
    if (typeof v !== 'bigint') return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new InvalidConfig(`param ${name} = ${v} is too large for a number`);
    return n;
  }

  /** The `string` or `enum` param `name`. */
  paramString(name: string): string | undefined {
    const v = this.params.get(name);
    return typeof v === 'string' ? v : undefined;
  }

  /** The innermost mount holding the absolute guest path `path`. */
  mountFor(path: string): Mount | undefined {
    let best: Mount | undefined;
    for (const m of this.mounts) {
      const root = m.guestPath.replace(/\/+$/, '');
      const inside = root === '' || path === root || path.startsWith(`${root}/`);
      if (inside && (best === undefined || m.guestPath.length > best.guestPath.length)) best = m;
    }
    return best;
  }

  /** What the earlier step `id` returned, if it ran. */
  previousStep(id: string): PreviousStep | undefined {
    return this.previous.find((s) => s.step === id);
  }

  /** Reports how far the step is: `percent` in 0..=100 and a short message. */
  report(percent: number, message: string): void {
    this.host.report(Math.min(100, Math.max(0, percent)), message);
  }

  /** Writes a line to the run log. */
  log(level: LogLevel, message: string): void {
    this.host.log(level, message);
  }

  trace(message: string): void {
    this.log('trace', message);
  }
  debug(message: string): void {
    this.log('debug', message);
  }
  info(message: string): void {
    this.log('info', message);
  }
  warn(message: string): void {
    this.log('warn', message);
  }
  error(message: string): void {
    this.log('error', message);
  }

  /** True once the run was cancelled or the step's deadline passed. */
  isCancelled(): boolean {
    return this.host.isCancelled();
  }

  /** Throws `Cancelled` once the run was cancelled: call it between units of work. */
  checkCancelled(): void {
    if (this.host.isCancelled()) throw new Cancelled();
  }
}
