/**
 * A run's live state, reduced from its events (the replay, then live ones) and seeded from
 * `GET /api/runs/{id}`: percent, step, ETA, warnings, the step timeline, the log, a pending
 * approval and the outcome. Pure, so it is tested without a socket.
 */
import type { Run } from "../api/client";

/** One event as the host sends it over Socket.IO (`data` has `runId`, `seq`, `customerId`). */
export interface LiveEvent {
  name: string;
  data: Record<string, unknown>;
}

export type StepStatus = "running" | "done" | "failed" | "waiting";

export interface StepLine {
  id: string;
  status: StepStatus;
  message: string | null;
}

export interface LogLine {
  key: number;
  level: "info" | "warn" | "error";
  text: string;
}

export interface PendingApproval {
  step: string;
  summary: string;
  details: unknown;
  expiresAt: string | null;
}

export type OutcomeKind = "completed" | "failed" | "cancelled";

export interface Outcome {
  kind: OutcomeKind;
  state: string;
  error: string | null;
  failedStep: string | null;
  rolledBack: string[];
  backupId: string | null;
  size: number | null;
  durationMs: number | null;
}

export interface LiveRunState {
  runId: string;
  /** `backup`, `restore`, `upgrade` or `run` (verify, layout migration, …). */
  family: string | null;
  percent: number;
  step: string | null;
  message: string | null;
  etaSeconds: number | null;
  warnings: string[];
  steps: StepLine[];
  log: LogLine[];
  approval: PendingApproval | null;
  outcome: Outcome | null;
  /** Events seen (for the run page), newest last, at most [`MAX_EVENTS`]. */
  events: { key: number; seq: number; name: string; data: Record<string, unknown> }[];
  nextKey: number;
}

/** Lines kept in the log and events kept for the run page: enough to read, bounded in memory. */
export const MAX_LOG = 500;
export const MAX_EVENTS = 1000;

export function initialRun(runId: string): LiveRunState {
  return {
    runId,
    family: null,
    percent: 0,
    step: null,
    message: null,
    etaSeconds: null,
    warnings: [],
    steps: [],
    log: [],
    approval: null,
    outcome: null,
    events: [],
    nextKey: 1,
  };
}

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];

/** The family of an event name: `backup-progress` → `backup`. */
export function familyOf(name: string): string | null {
  const m = /^(.*)-(progress|completed|failed)$/.exec(name);
  return m ? m[1] : null;
}

function withLog(s: LiveRunState, level: LogLine["level"], text: string): LiveRunState {
  const log = [...s.log, { key: s.nextKey, level, text }];
  return { ...s, log: log.length > MAX_LOG ? log.slice(log.length - MAX_LOG) : log, nextKey: s.nextKey + 1 };
}

function setStep(s: LiveRunState, id: string, status: StepStatus, message: string | null): LiveRunState {
  const found = s.steps.some((l) => l.id === id);
  const steps = found
    ? s.steps.map((l) => (l.id === id ? { ...l, status, message: message ?? l.message } : l))
    : [...s.steps, { id, status, message }];
  return { ...s, steps };
}

/** Applies one event to the state. Events of other runs are ignored. */
export function reduceRun(state: LiveRunState, event: LiveEvent): LiveRunState {
  const { name, data } = event;
  if (str(data.runId) && data.runId !== state.runId) return state;
  const family = familyOf(name);
  if (!family) return state;
  let s: LiveRunState = { ...state, family: state.family ?? family };
  const events = [...s.events, { key: s.nextKey, seq: num(data.seq) ?? 0, name, data }];
  s = {
    ...s,
    events: events.length > MAX_EVENTS ? events.slice(events.length - MAX_EVENTS) : events,
    nextKey: s.nextKey + 1,
  };

  if (name.endsWith("-progress")) {
    const step = str(data.step);
    const message = str(data.message);
    const percent = num(data.percent);
    // The host never sends a lower percent; an event without one (an approval) keeps it.
    if (percent != null) s.percent = Math.max(s.percent, Math.min(percent, 100));
    if (step) s.step = step;
    if (message) s.message = message;
    const eta = num(data.etaSeconds);
    if (eta != null) s.etaSeconds = eta;
    if (Array.isArray(data.warnings)) s.warnings = strings(data.warnings);
    const warning = str(data.warning);
    if (warning && !s.warnings.includes(warning)) s.warnings = [...s.warnings, warning];

    const approval = data.approval as Record<string, unknown> | undefined;
    if (approval && typeof approval === "object") {
      s.approval = {
        step: step ?? "",
        summary: str(approval.summary) ?? message ?? "",
        details: approval.details ?? null,
        expiresAt: str(approval.expiresAt),
      };
      if (step) s = setStep(s, step, "waiting", "waiting for approval");
      return withLog(s, "warn", `${step ? `${step}: ` : ""}${message ?? "waiting for approval"}`);
    }
    if (!message) return s;
    if (message === "queued") return withLog(s, "info", "queued");
    if (message === "started" && !step) return withLog(s, "info", "run started");
    if (!step) {
      // Host lines about the whole run ("backup … complete", "events capped: …").
      return withLog(s, "info", message);
    }
    if (message === "started") return withLog(setStep(s, step, "running", null), "info", `${step}: started`);
    if (message === "done") return withLog(setStep(s, step, "done", null), "info", `${step}: done`);
    if (message.startsWith("failed: ")) {
      return withLog(setStep(s, step, "failed", message.slice(8)), "error", `${step}: error: ${message.slice(8)}`);
    }
    if (message.startsWith("warning: ")) return withLog(s, "warn", `${step}: ${message}`);
    if (/^(approved|rejected) by /.test(message)) {
      s.approval = null;
      return withLog(setStep(s, step, "running", message), "info", `${step}: ${message}`);
    }
    // A step's own progress: shown as the current message, not logged (it comes often).
    return setStep(s, step, "running", message);
  }

  const durationMs = num(data.durationMs);
  if (name.endsWith("-completed")) {
    s = {
      ...s,
      percent: 100,
      etaSeconds: null,
      approval: null,
      // The run succeeded, so every step still shown as going ended well.
      steps: s.steps.map((l) => (l.status === "running" || l.status === "waiting" ? { ...l, status: "done" } : l)),
      outcome: {
        kind: "completed",
        state: "succeeded",
        error: null,
        failedStep: null,
        rolledBack: [],
        backupId: str(data.backupId),
        size: num(data.size),
        durationMs,
      },
    };
    // Log lines avoid the outcome's own words, so "Completed" / "Failed" / "Cancelled" name
    // exactly one thing in the panel.
    return withLog(s, "info", "run ended: succeeded");
  }
  // *-failed: failed, cancelled or interrupted.
  const runState = str(data.state) ?? "failed";
  const error = str(data.error);
  const failedStep = str(data.failedStep);
  s = {
    ...s,
    etaSeconds: null,
    approval: null,
    outcome: {
      kind: runState === "cancelled" ? "cancelled" : "failed",
      state: runState,
      error,
      failedStep,
      rolledBack: strings(data.rolledBack),
      backupId: str(data.backupId),
      size: null,
      durationMs,
    },
  };
  const ended =
    runState === "cancelled" ? "stopped on request" : runState === "interrupted" ? "interrupted" : "with an error";
  return withLog(s, runState === "cancelled" ? "warn" : "error", `run ended ${ended}`);
}

const FINAL_STATES = new Set(["succeeded", "failed", "cancelled", "interrupted"]);

/** True for a run that has ended. */
export function isFinished(state: string): boolean {
  return FINAL_STATES.has(state);
}

/**
 * Seeds the state from the run as the host has it now (its percent, message, warnings, a pending
 * approval, and the end when it has ended), for when events are late or lost.
 */
export function seedFromRun(state: LiveRunState, run: Run): LiveRunState {
  let s: LiveRunState = {
    ...state,
    family: state.family ?? familyOfPipeline(run.pipeline),
    percent: Math.max(state.percent, run.progress ?? 0),
    message: state.message ?? run.message,
    warnings: state.warnings.length ? state.warnings : run.warnings,
  };
  if (run.approval && !state.outcome) {
    s.approval = {
      step: run.approval.step,
      summary: run.approval.summary,
      details: run.approval.details,
      expiresAt: run.approval.expiresAt,
    };
  }
  if (isFinished(run.state) && !s.outcome) {
    s.approval = null;
    s.outcome = {
      kind: run.state === "succeeded" ? "completed" : run.state === "cancelled" ? "cancelled" : "failed",
      state: run.state,
      error: run.error,
      failedStep: null,
      rolledBack: [],
      backupId: run.backupId,
      size: null,
      durationMs:
        run.startedAt && run.finishedAt
          ? new Date(run.finishedAt).getTime() - new Date(run.startedAt).getTime()
          : null,
    };
    if (run.state === "succeeded") s.percent = 100;
  }
  return s;
}

/** The live-event family of a pipeline (as the host names its events). */
export function familyOfPipeline(pipeline: string): string {
  return pipeline === "backup" || pipeline === "restore" || pipeline === "upgrade" ? pipeline : "run";
}
