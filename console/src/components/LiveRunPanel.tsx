/**
 * The live run panel: progress, step, ETA, warnings, the run log, Cancel, the approval panel
 * when the run waits for people, and the outcome.
 */
import { useEffect, useId, useRef, useState } from "react";
import { api, call, errorText, type Run } from "../api/client";
import { formatBytes, formatDuration, formatEta, formatPercent } from "../lib/format";
import type { LiveRunState } from "../lib/liveRun";
import { Link } from "../lib/router";
import { ApprovalPanel } from "./ApprovalPanel";
import { ErrorAlert, ProgressBar } from "./ui";

export interface LiveRunPanelProps {
  state: LiveRunState;
  run: Run | null;
  canOperate: boolean;
}

export function LiveRunPanel({ state, run, canOperate }: LiveRunPanelProps) {
  const headingId = useId();
  const [cancelError, setCancelError] = useState<string | null>(null);
  const [cancelling, setCancelling] = useState(false);
  const pipeline = run?.pipeline ?? state.family ?? "run";
  const outcome = state.outcome;
  const logBox = useRef<HTMLDivElement>(null);
  const lines = state.log.length;
  useEffect(() => {
    // Follow new lines unless the person scrolled up to read older ones.
    const box = logBox.current;
    if (box && box.scrollHeight - box.scrollTop - box.clientHeight < 80) box.scrollTop = box.scrollHeight;
  }, [lines]);

  async function cancel() {
    setCancelling(true);
    setCancelError(null);
    try {
      await call(api.POST("/api/runs/{runId}/cancel", { params: { path: { runId: state.runId } }, body: {} }));
    } catch (e) {
      setCancelError(errorText(e));
      setCancelling(false);
    }
  }

  return (
    <section className="card live" aria-labelledby={headingId}>
      <div className="page-head">
        <h2 id={headingId}>Live run</h2>
        <Link to={`/runs/${state.runId}`} className="small">
          {pipeline} run {state.runId.slice(0, 8)}
        </Link>
      </div>
      <ProgressBar value={state.percent} label={`${pipeline} progress`} />
      <p className="live-line">
        <span>{formatPercent(state.percent)}</span>
        <span>Step: {state.step ?? "—"}</span>
        {!outcome && state.etaSeconds != null && <span>{formatEta(state.etaSeconds)}</span>}
      </p>
      {state.message && !outcome && !state.approval && <p className="muted">{state.message}</p>}
      {state.warnings.length > 0 && (
        <ul className="warnings" aria-label="Warnings">
          {state.warnings.map((w, i) => (
            <li key={`${i}-${w}`}>⚠ {w}</li>
          ))}
        </ul>
      )}
      {state.approval && !outcome && (
        <ApprovalPanel runId={state.runId} approval={state.approval} canDecide={canOperate} />
      )}
      {outcome ? (
        <div className={`outcome outcome-${outcome.kind}`} role="status">
          <strong>
            {outcome.kind === "completed" ? "Completed" : outcome.kind === "cancelled" ? "Cancelled" : "Failed"}
          </strong>
          {outcome.kind === "completed" && (
            <span>
              {outcome.backupId && <> · backup {outcome.backupId}</>}
              {outcome.size != null && <> · {formatBytes(outcome.size)}</>}
              {outcome.durationMs != null && <> · {formatDuration(outcome.durationMs)}</>}
            </span>
          )}
          {outcome.kind !== "completed" && outcome.error && <span>: {outcome.error}</span>}
        </div>
      ) : (
        canOperate && (
          <button type="button" className="danger" onClick={cancel} disabled={cancelling}>
            Cancel run
          </button>
        )
      )}
      <ErrorAlert error={cancelError} />
      <h3 className="small-head">Run log</h3>
      <div className="log-wrap" tabIndex={0} ref={logBox}>
        <ol className="log" aria-label="Run log">
          {state.log.map((l) => (
            <li key={l.key} className={`log-${l.level}`}>
              {l.text}
            </li>
          ))}
        </ol>
      </div>
    </section>
  );
}
