/**
 * What a waiting run asks people to decide (an upgrade's `.env` changes): the keys each
 * service adds, changes or removes, values masked, and Approve / Reject.
 */
import { useId, useState } from "react";
import { api, call, errorText } from "../api/client";
import type { PendingApproval } from "../lib/liveRun";
import { ErrorAlert, Time } from "./ui";

export interface KeyChange {
  service: string;
  change: "added" | "changed" | "removed" | "extra";
  key: string;
}

const CHANGES = ["added", "changed", "removed", "extra"] as const;

function keysOf(v: unknown): string[] {
  // Key names only: from a list of names, or the keys of a map (its values are dropped here).
  if (Array.isArray(v)) return v.filter((k): k is string => typeof k === "string");
  if (v && typeof v === "object") return Object.keys(v);
  return [];
}

/** The `.env` key changes in an approval's details (`{services: {<name>: {added, …}}}`). */
export function keyChanges(details: unknown): KeyChange[] {
  if (!details || typeof details !== "object") return [];
  const d = details as Record<string, unknown>;
  const services =
    d.services && typeof d.services === "object"
      ? (d.services as Record<string, unknown>)
      : { "": d };
  const out: KeyChange[] = [];
  for (const [service, diff] of Object.entries(services)) {
    if (!diff || typeof diff !== "object") continue;
    for (const change of CHANGES) {
      for (const key of keysOf((diff as Record<string, unknown>)[change])) {
        out.push({ service, change, key });
      }
    }
  }
  return out;
}

export function ApprovalPanel({
  runId,
  approval,
  canDecide,
}: {
  runId: string;
  approval: PendingApproval;
  canDecide: boolean;
}) {
  const headingId = useId();
  const [busy, setBusy] = useState(false);
  const [decided, setDecided] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const changes = keyChanges(approval.details);

  async function decide(approve: boolean) {
    setBusy(true);
    setError(null);
    try {
      await call(api.POST("/api/runs/{runId}/approval", { params: { path: { runId } }, body: { approve } }));
      setDecided(approve ? "Approved; the run goes on." : "Rejected; the run rolls back.");
    } catch (e) {
      setError(errorText(e));
      setBusy(false);
    }
  }

  return (
    <section className="approval" aria-labelledby={headingId}>
      <h3 id={headingId}>Approval needed</h3>
      <p>{approval.summary}</p>
      {approval.expiresAt && (
        <p className="muted small">
          The step gives up <Time value={approval.expiresAt} /> (then the run rolls back).
        </p>
      )}
      {changes.length > 0 && (
        <div className="table-wrap" tabIndex={0} role="region" aria-label=".env changes">
          <table>
            <caption>.env changes</caption>
            <thead>
              <tr>
                <th scope="col">Service</th>
                <th scope="col">Key</th>
                <th scope="col">Change</th>
                <th scope="col">Value</th>
              </tr>
            </thead>
            <tbody>
              {changes.map((c) => (
                <tr key={`${c.service}/${c.change}/${c.key}`}>
                  <td>{c.service || "—"}</td>
                  <td>
                    <code>{c.key}</code>
                  </td>
                  <td className={`change-${c.change}`}>{c.change}</td>
                  <td>
                    <span aria-hidden="true">••••••</span>
                    <span className="sr-only">hidden</span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {decided ? (
        <p role="status">{decided}</p>
      ) : (
        canDecide && (
          <div className="actions">
            <button type="button" className="primary" disabled={busy} onClick={() => decide(true)}>
              Approve
            </button>
            <button type="button" className="danger" disabled={busy} onClick={() => decide(false)}>
              Reject
            </button>
          </div>
        )
      )}
      <ErrorAlert error={error} />
    </section>
  );
}
