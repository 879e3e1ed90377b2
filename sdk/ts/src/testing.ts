// Node-side helpers for a plugin's own tests (`@qodify/plugin-sdk/testing`; never bundled into
// a component): run the built plugin once on a fixture folder with `qodify-host step`, through
// the real host and sandbox, and get its report as JSON to compare with an expected file.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where the host binary and the built plugins are, from the environment `build.mjs test` gets. */
export interface HostSetup {
  /** `QODIFY_HOST`: the `qodify-host` binary. */
  host: string;
  /** `QODIFY_PLUGINS_DIR`: the folder holding `<id>.wasm`. */
  pluginsDir: string;
}

/**
 * The host to run steps with, or `undefined` when `QODIFY_HOST`/`QODIFY_PLUGINS_DIR` are not
 * set (skip the test). Under CI they must be: a test that skips there would prove nothing.
 */
export function hostSetup(): HostSetup | undefined {
  const host = process.env.QODIFY_HOST;
  const pluginsDir = process.env.QODIFY_PLUGINS_DIR;
  if (host && pluginsDir) return { host, pluginsDir };
  if (process.env.CI === 'true') {
    throw new Error('QODIFY_HOST and QODIFY_PLUGINS_DIR must be set under CI (cargo xtask test sets them)');
  }
  return undefined;
}

/** The folder of the plugin under test (`build.mjs test` sets `QODIFY_PLUGIN_DIR`). */
export function pluginDir(): string {
  const dir = process.env.QODIFY_PLUGIN_DIR;
  if (!dir) throw new Error('QODIFY_PLUGIN_DIR is not set: run the tests with `node sdk/ts/build.mjs test <plugin dir>`');
  return dir;
}

/** One `qodify-host step` run. */
export interface StepRun {
  /** The plugin id. */
  plugin: string;
  /** The folder standing in for a customer's folder. */
  fixture: string;
  /** The step's config (what a pipeline writes under `[steps.config]`). */
  config?: Record<string, unknown>;
  /** Mounts, `[ro:|rw:]PATH=GUEST` (none: the fixture read-only at `/customer`). */
  grants?: string[];
  /** Programs, `NAME` or `NAME:GLOB,GLOB`. */
  programs?: string[];
  /** HTTP origins, `http://HOST:PORT`. */
  origins?: string[];
  /** Run params. */
  params?: Record<string, string>;
}

/** What `qodify-host step --json` printed, without the values that change from run to run. */
export type StepReport = Record<string, unknown>;

/**
 * Runs the plugin once with `qodify-host step --json` and returns its report without `sha256`
 * and `durationMs`. The exit status is not an error: a failed step reports `status: "failed"`.
 */
export function runStep(setup: HostSetup, run: StepRun): StepReport {
  const work = mkdtempSync(join(tmpdir(), 'qodify-step-'));
  try {
    const config = join(work, 'config.json');
    writeFileSync(config, JSON.stringify(run.config ?? {}));
    const args = ['--plugins-dir', setup.pluginsDir, 'step', run.plugin, '--fixture', run.fixture, '--step-config', config, '--json'];
    for (const g of run.grants ?? []) args.push('--grant', g);
    for (const p of run.programs ?? []) args.push('--program', p);
    for (const o of run.origins ?? []) args.push('--origin', o);
    for (const [k, v] of Object.entries(run.params ?? {})) args.push('--param', `${k}=${v}`);
    let stdout: string;
    try {
      stdout = execFileSync(setup.host, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const failed = e as { status?: number; stdout?: string; stderr?: string };
      // 1: the step failed (the report is on stdout); 2: it could not start.
      if (failed.status !== 1 || !failed.stdout) throw new Error(`qodify-host step ${run.plugin} failed: ${failed.stderr ?? String(e)}`);
      stdout = failed.stdout;
    }
    const report = JSON.parse(stdout) as StepReport;
    delete report.sha256;
    delete report.durationMs;
    return report;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Reads a JSON file (an expected report). */
export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}
