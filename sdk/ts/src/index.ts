/// <reference path="../generated/step-ts.d.ts" />
// @qodify/plugin-sdk: write a qodify-host step plugin in TypeScript. A plugin is a config schema
// and a step function; `cargo xtask build` bundles it with this SDK and componentize-js makes
// the WebAssembly component. The shape follows the Rust SDK (plugins/qodify-plugin-sdk).
//
//   import { defineStep, t, fs, artifact } from '@qodify/plugin-sdk';
//   const config = t.object({ output: t.string() });
//   export const run = defineStep(config, (ctx, { output }) => {
//     fs.writeFile(output, `hello ${ctx.customer.domain}\n`);
//     return { values: { greeted: ctx.customer.domain }, artifacts: [artifact('hello', output)] };
//   });

export { defineStep, type RunExport, type StepFn } from './step';
export { Context, Recorder, type ContextHost, type LogLevel, type Mount, type ParamValue, type PreviousStep, type TestContextInit } from './context';
export {
  StepError,
  InvalidConfig,
  NotFound,
  PermissionDenied,
  Io,
  CommandFailed,
  Cancelled,
  Internal,
  toStepError,
  type ErrorKind,
} from './errors';
export { Schema, t, parseConfig, parseSize, type Infer, type ObjectOf } from './schema';
export { Output, artifact, type Artifact, type Printable, type StepReturn } from './output';
export { Sha256, sha256Hex } from './sha256';
export { GlobSet } from './glob';
export { formatArg } from './console';
export * as fs from './fs';
export * as files from './files';
export * as commands from './commands';
export * as http from './http';
export * as approvals from './approvals';
