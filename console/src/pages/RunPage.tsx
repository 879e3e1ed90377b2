/** One run: its state, params, events (replayed, then live) and log. */
import { LiveRunPanel } from "../components/LiveRunPanel";
import { ErrorAlert, Loading, StateBadge, Time } from "../components/ui";
import { useSession } from "../lib/context";
import { formatDuration } from "../lib/format";
import { useLiveRun } from "../lib/hooks";
import { Link } from "../lib/router";
import { duration } from "./Runs";

function summary(data: Record<string, unknown>): string {
  const parts: string[] = [];
  if (typeof data.percent === "number") parts.push(`${data.percent} %`);
  if (typeof data.step === "string") parts.push(data.step);
  if (typeof data.message === "string") parts.push(data.message);
  if (typeof data.error === "string") parts.push(data.error);
  if (typeof data.backupId === "string") parts.push(`backup ${data.backupId}`);
  return parts.join(" · ");
}

export function RunPage({ runId }: { runId: string }) {
  const { canOperate } = useSession();
  const { state, run, error } = useLiveRun(runId);

  return (
    <>
      <p className="crumbs">
        <Link to="/runs">Runs</Link> ›
      </p>
      <h1>Run {runId}</h1>
      <ErrorAlert error={error} />
      {!run && !state?.events.length ? (
        !error && 
        <Loading what="the run" />
      ) : (
        run && (
          <dl className="facts">
            <dt>State</dt>
            <dd>
              <StateBadge state={run.state} />
              {run.cancelRequested && run.state === "running" && " (cancel requested)"}
            </dd>
            <dt>Customer</dt>
            <dd>
              <Link to={`/customers/${encodeURIComponent(run.customerId)}`}>{run.customerId}</Link>
            </dd>
            <dt>Pipeline</dt>
            <dd>{run.pipeline}</dd>
            <dt>Node</dt>
            <dd>{run.node ?? (run.state === "queued" ? "not claimed yet" : "—")}</dd>
            <dt>Created</dt>
            <dd>
              <Time value={run.createdAt} />
            </dd>
            <dt>Duration</dt>
            <dd>{formatDuration(duration(run))}</dd>
            <dt>Triggered by</dt>
            <dd>{run.triggeredBy ?? "—"}</dd>
            {run.backupId && (
              <>
                <dt>Backup</dt>
                <dd>{run.backupId}</dd>
              </>
            )}
            {run.error && (
              <>
                <dt>Error</dt>
                <dd className="error-text">{run.error}</dd>
              </>
            )}
            <dt>Params</dt>
            <dd>
              {Object.keys(run.params).length === 0 ? (
                "none"
              ) : (
                <ul className="plain">
                  {Object.entries(run.params).map(([k, v]) => (
                    <li key={k}>
                      <code>{k}</code> = <code>{v}</code>
                    </li>
                  ))}
                </ul>
              )}
            </dd>
          </dl>
        )
      )}
      {state && (run || state.events.length > 0) && (
        <LiveRunPanel state={state} run={run} canOperate={canOperate} />
      )}
      <h2>Events</h2>
      {state && state.events.length > 0 ? (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Events table">
          <table>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Event</th>
                <th scope="col">What</th>
              </tr>
            </thead>
            <tbody>
              {state.events.map((e) => (
                <tr key={e.key}>
                  <td>{e.seq || "live"}</td>
                  <td>{e.name}</td>
                  <td>{summary(e.data)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <p>No events yet.</p>
      )}
    </>
  );
}
