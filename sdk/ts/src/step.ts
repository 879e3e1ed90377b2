// `defineStep`: wires a step function to the component's `run` export. It parses and checks the
// config, builds the `Context`, and turns whatever the function threw into the WIT `step-error`.
import type { StepContext, StepResult } from 'qodify:pipeline/types@0.1.2';

import { Context } from './context';
import { toStepError } from './errors';
import { type StepReturn, toOutput } from './output';
import { type Schema, parseConfig, t } from './schema';
import { routeConsole } from './console';

/** The component's `run` export. */
export type RunExport = (ctx: StepContext) => StepResult;

/** A step function: do the work through the mounts and host interfaces, return outputs. */
export type StepFn<Config> = (ctx: Context, config: Config) => StepReturn;

const noConfig = t.object({});

/** What SpiderMonkey throws when an allocation fails. */
const OUT_OF_MEMORY = 'out of memory';

/**
 * Defines the step; export the result as `run`:
 *
 * ```ts
 * const config = t.object({ root: t.string(), exclude: t.array(t.string()).default([]) });
 * export const run = defineStep(config, (ctx, cfg) => {
 *   ctx.info(`walking ${cfg.root}`);
 *   return { values: { entries: fs.readDir(cfg.root).length } };
 * });
 * ```
 *
 * `config` checks the step's `config` table (unknown fields refused, errors naming the field);
 * without it the table must be empty. A thrown `StepError` keeps its kind, a plain
 * `{ kind, message }` too; anything else fails the step as `internal`.
 */
export function defineStep<Config>(config: Schema<Config>, step: StepFn<Config>): RunExport;
export function defineStep(step: StepFn<Record<string, never>>): RunExport;
export function defineStep<Config>(
  configOrStep: Schema<Config> | StepFn<Record<string, never>>,
  maybeStep?: StepFn<Config>,
): RunExport {
  routeConsole();
  const [schema, step] =
    typeof configOrStep === 'function'
      ? [noConfig as unknown as Schema<Config>, configOrStep as unknown as StepFn<Config>]
      : [configOrStep, maybeStep as StepFn<Config>];
  return (raw: StepContext): StepResult => {
    try {
      const ctx = Context.fromWit(raw);
      const config = parseConfig(schema, raw.config);
      return toOutput(step(ctx, config)).toWit();
    } catch (e) {
      // The engine ran out of memory (the host refused to grow it): let the step trap, so the
      // host names its memory limit as the cause instead of reporting a plugin error.
      if (e === OUT_OF_MEMORY) throw e;
      // componentize-js turns a thrown value into the `err` of the export's result.
      throw toStepError(e).toWit();
    }
  };
}
