/** Runs of every customer (queued, running, recent), filtered by state. */
import { useState } from "react";
import { api, call, errorText, type Run, type RunState } from "../api/client";
import { ErrorAlert, Loading, ProgressBar, StateBadge, Time } from "../components/ui";
import { formatDuration } from "../lib/format";
import { useLoad } from "../lib/hooks";
import { Link } from "../lib/router";

const PAGE = 100;

const FILTERS: { value: string; label: string }[] = [
  { value: "", label: "All" },
  { value: "queued,running", label: "Queued or running" },
  { value: "queued", label: "Queued" },
  { value: "running", label: "Running" },
  { value: "succeeded", label: "Succeeded" },
  { value: "failed,interrupted", label: "Failed or interrupted" },
  { value: "cancelled", label: "Cancelled" },
];

export function duration(run: Run): number | null {
  if (!run.startedAt) return null;
  const end = run.finishedAt ? new Date(run.finishedAt) : new Date();
  return end.getTime() - new Date(run.startedAt).getTime();
}

/** The select's value (`""`, `queued,running`, …) as the `state` query's list. */
function states(value: string): RunState[] | undefined {
  return value ? (value.split(",") as RunState[]) : undefined;
}

export function Runs() {
  const [state, setState] = useState("");
  const [more, setMore] = useState<Run[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [moreError, setMoreError] = useState<string | null>(null);

  const first = useLoad(async () => {
    const page = await call(api.GET("/api/runs", { params: { query: { state: states(state), limit: PAGE } } }));
    setMore([]);
    setNext(page.nextBefore ?? null);
    return page.runs;
  }, [state]);

  async function loadMore() {
    if (!next) return;
    try {
      const page = await call(
        api.GET("/api/runs", { params: { query: { state: states(state), limit: PAGE, before: next } } }),
      );
      setMore((m) => [...m, ...page.runs]);
      setNext(page.nextBefore ?? null);
    } catch (e) {
      setMoreError(errorText(e));
    }
  }

  const wanted = new Set(state.split(",").filter(Boolean));
  // The filter is applied here too, so an older host that ignores `state` still filters.
  const rows = [...(first.data ?? []), ...more].filter((r) => wanted.size === 0 || wanted.has(r.state));

  return (
    <>
      <div className="page-head">
        <h1>Runs</h1>
        <button type="button" onClick={first.reload}>
          Refresh
        </button>
      </div>
      <div className="filters">
        <label htmlFor="run-state">State</label>
        <select id="run-state" value={state} onChange={(e) => setState(e.target.value)}>
          {FILTERS.map((f) => (
            <option key={f.value} value={f.value}>
              {f.label}
            </option>
          ))}
        </select>
      </div>
      <ErrorAlert error={first.error} />
      {first.loading && !first.data ? (
        <Loading what="runs" />
      ) : rows.length === 0 ? (
        <p>No runs.</p>
      ) : (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Runs table">
          <table>
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">Customer</th>
                <th scope="col">Pipeline</th>
                <th scope="col">State</th>
                <th scope="col">Created</th>
                <th scope="col">Duration</th>
                <th scope="col">Triggered by</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id}>
                  <td>
                    <Link to={`/runs/${r.id}`} aria-label={`Run ${r.id}`}>
                      {r.id.slice(0, 8)}
                    </Link>
                  </td>
                  <td>
                    <Link to={`/customers/${encodeURIComponent(r.customerId)}`}>{r.customerId}</Link>
                  </td>
                  <td>{r.pipeline}</td>
                  <td>
                    <StateBadge state={r.state} />
                    {r.state === "running" && (
                      <ProgressBar value={r.progress ?? 0} label={`run ${r.id.slice(0, 8)} progress`} />
                    )}
                  </td>
                  <td>
                    <Time value={r.createdAt} />
                  </td>
                  <td>{formatDuration(duration(r))}</td>
                  <td>{r.triggeredBy ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {next && (
        <button type="button" onClick={loadMore}>
          Load more
        </button>
      )}
      <ErrorAlert error={moreError} />
    </>
  );
}
