/**
 * Customer › Upgrades: the current release, the catalog's targets (a target that is not allowed
 * is disabled with the reason), heap and type-check options, then the step timeline and the
 * outcome of the upgrade run.
 */
import { useState, type FormEvent } from "react";
import { api, call, errorText } from "../api/client";
import type { UpgradeTarget } from "../api/client";
import { ErrorAlert, Loading } from "../components/ui";
import { useSession } from "../lib/context";
import type { LiveRun } from "../lib/hooks";
import type { StepStatus } from "../lib/liveRun";
import { useLoad } from "../lib/hooks";

/** Step states in words that do not repeat the outcome's ("Failed", "Completed"). */
const STEP_WORDS: Record<StepStatus, string> = {
  running: "running",
  done: "done",
  failed: "error",
  waiting: "waiting for approval",
};

export interface UpgradesTabProps {
  customerId: string;
  live: LiveRun;
  onRunStarted: (runId: string) => void;
}

/** "v1.1.0" for "1.1.0" and "v1.1.0" alike. */
export function vName(version: string): string {
  return /^v/i.test(version) ? version : `v${version}`;
}

export function UpgradesTab({ customerId, live, onRunStarted }: UpgradesTabProps) {
  const { canOperate } = useSession();
  const catalog = useLoad(
    () => call(api.GET("/api/customers/{id}/upgrades", { params: { path: { id: customerId } } })),
    [customerId],
  );
  const [target, setTarget] = useState<string | null>(null);
  const [heap, setHeap] = useState("");
  const [skipTypeCheck, setSkipTypeCheck] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const state = live.state;
  const upgrade = state && (live.run?.pipeline ?? state.family) === "upgrade" ? state : null;
  const running = Boolean(upgrade && !upgrade.outcome);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!target) return;
    setBusy(true);
    setError(null);
    try {
      const heapMB = heap.trim() ? Number(heap) : null;
      const run = await call(
        api.POST("/api/customers/{id}/upgrades", {
          params: { path: { id: customerId } },
          body: { targetVersion: target, heapMB, skipTypeCheck },
        }),
      );
      onRunStarted(run.runId);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  const targets = catalog.data?.targets ?? [];

  return (
    <>
      <h2>Upgrades</h2>
      <ErrorAlert error={catalog.error} />
      {catalog.loading && !catalog.data ? (
        <Loading what="the release catalog" />
      ) : (
        catalog.data && (
          <p>
            Current release: <strong>{catalog.data.current.release ?? "unknown"}</strong> (layout{" "}
            {catalog.data.current.layout})
          </p>
        )
      )}
      {catalog.data && (
        <form onSubmit={submit} className="stack">
          <fieldset>
            <legend>Target release</legend>
            {targets.length === 0 && <p>The release catalog has no other release.</p>}
            {targets.map((t) => (
              <TargetOption
                key={t.version}
                target={t}
                checked={target === t.version}
                onChange={() => setTarget(t.version)}
              />
            ))}
          </fieldset>
          {canOperate && (
            <>
              <div className="row">
                <label htmlFor="heap">Heap (MB)</label>
                <input
                  id="heap"
                  type="number"
                  min={256}
                  max={65536}
                  step={256}
                  placeholder="4096"
                  value={heap}
                  onChange={(e) => setHeap(e.target.value)}
                />
              </div>
              <label className="check">
                <input
                  type="checkbox"
                  checked={skipTypeCheck}
                  onChange={(e) => setSkipTypeCheck(e.target.checked)}
                />
                Skip type check
              </label>
              <ErrorAlert error={error} />
              <div className="actions">
                <button type="submit" className="primary" disabled={busy || !target || running}>
                  Start upgrade
                </button>
              </div>
            </>
          )}
        </form>
      )}
      {upgrade && (
        <section aria-labelledby="steps-head" className="card">
          <h3 id="steps-head">
            Upgrade{live.run?.params?.targetVersion ? ` to ${vName(live.run.params.targetVersion)}` : ""}
          </h3>
          <ol className="timeline" aria-label="Steps">
            {upgrade.steps.map((s) => (
              <li key={s.id} className={`step-${s.status}`}>
                <span className="step-id">{s.id}</span> <span className="step-state">{STEP_WORDS[s.status]}</span>
                {s.message && (s.status === "running" || s.status === "failed") && <span className="muted small"> — {s.message}</span>}
              </li>
            ))}
          </ol>
          {upgrade.outcome && <UpgradeOutcome live={live} />}
        </section>
      )}
    </>
  );
}

function TargetOption({
  target,
  checked,
  onChange,
}: {
  target: UpgradeTarget;
  checked: boolean;
  onChange: () => void;
}) {
  const whyId = `why-${target.version}`;
  const env = target.envChanges;
  const envCount = env ? env.added.length + env.changed.length + env.removed.length : 0;
  return (
    <div className="target">
      <label className="check">
        <input
          type="radio"
          name="target-version"
          value={target.version}
          checked={checked}
          disabled={!target.allowed}
          aria-describedby={target.allowed ? undefined : whyId}
          onChange={onChange}
        />
        {target.version}
      </label>
      {!target.allowed && target.reason && (
        <span id={whyId} className="reason small">
          not allowed: {target.reason}
        </span>
      )}
      {target.notes && <p className="muted small">{target.notes}</p>}
      {env && envCount > 0 && (
        <p className="muted small">
          .env: {env.added.length} added, {env.changed.length} changed, {env.removed.length} removed
          {env.changed.length + env.removed.length > 0 && " (asks for approval)"}
        </p>
      )}
    </div>
  );
}

function UpgradeOutcome({ live }: { live: LiveRun }) {
  const outcome = live.state?.outcome;
  if (!outcome) return null;
  const version = live.run?.params?.targetVersion;
  if (outcome.kind === "completed") {
    return (
      <p className="outcome outcome-completed" role="status">
        <strong>Upgraded to {version ? vName(version) : "the new release"}</strong>
      </p>
    );
  }
  const rolledBack = outcome.rolledBack.length > 0 || outcome.kind !== "cancelled";
  return (
    <div className="outcome outcome-failed" role="status">
      <strong>{rolledBack ? "Rolled back" : "Cancelled"}</strong>
      <p>
        {outcome.failedStep ? `Step ${outcome.failedStep} failed` : `The run ${outcome.state}`}
        {outcome.error ? `: ${outcome.error}` : ""}
      </p>
      {outcome.rolledBack.length > 0 && <p className="small">Undone: {outcome.rolledBack.join(", ")}</p>}
    </div>
  );
}
