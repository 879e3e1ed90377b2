/** The audit log: who did what, filtered by customer, action and actor. */
import { useState, type FormEvent } from "react";
import { api, call, errorText, type Schemas } from "../api/client";
import { ErrorAlert, Loading, Time } from "../components/ui";
import { formatBytes, formatDuration } from "../lib/format";
import { useLoad } from "../lib/hooks";
import { Link } from "../lib/router";

type Entry = Schemas["AuditEntry"];
const PAGE = 100;

interface Filters {
  customer: string;
  action: string;
  actor: string;
}

/** The detail of an entry in one line: sizes and durations for people, the rest as key=value. */
export function detailText(detail: unknown): string {
  if (detail == null) return "";
  if (typeof detail !== "object") return String(detail);
  return Object.entries(detail as Record<string, unknown>)
    .filter(([, v]) => v != null && v !== "")
    .map(([k, v]) => {
      if (k === "size" && typeof v === "number") return `size ${formatBytes(v)}`;
      if (k === "durationMs" && typeof v === "number") return `took ${formatDuration(v)}`;
      return `${k}=${typeof v === "object" ? JSON.stringify(v) : String(v)}`;
    })
    .join(", ");
}

export function Audit() {
  const [draft, setDraft] = useState<Filters>({ customer: "", action: "", actor: "" });
  const [filters, setFilters] = useState<Filters>(draft);
  const [more, setMore] = useState<Entry[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const [moreError, setMoreError] = useState<string | null>(null);

  const query = (before?: number) => ({
    customer: filters.customer.trim() || undefined,
    action: filters.action.trim() || undefined,
    actor: filters.actor.trim() || undefined,
    limit: PAGE,
    before,
  });

  const first = useLoad(async () => {
    const page = await call(api.GET("/api/audit", { params: { query: query() } }));
    setMore([]);
    setNext(page.nextBefore ?? null);
    return page.entries;
  }, [filters]);

  async function loadMore() {
    if (next == null) return;
    try {
      const page = await call(api.GET("/api/audit", { params: { query: query(next) } }));
      setMore((m) => [...m, ...page.entries]);
      setNext(page.nextBefore ?? null);
    } catch (e) {
      setMoreError(errorText(e));
    }
  }

  function apply(e: FormEvent) {
    e.preventDefault();
    setFilters({ ...draft });
  }

  const rows = [...(first.data ?? []), ...more];

  return (
    <>
      <h1>Audit log</h1>
      <form className="filters" onSubmit={apply}>
        {(
          [
            ["customer", "Customer", "customer id"],
            ["action", "Action", "e.g. backup.deleted"],
            ["actor", "Actor", "token name"],
          ] as const
        ).map(([key, label, hint]) => (
          <div key={key} className="field">
            <label htmlFor={`audit-${key}`}>{label}</label>
            <input
              id={`audit-${key}`}
              placeholder={hint}
              value={draft[key]}
              onChange={(e) => setDraft((d) => ({ ...d, [key]: e.target.value }))}
            />
          </div>
        ))}
        <button type="submit">Apply filters</button>
      </form>
      <ErrorAlert error={first.error} />
      {first.loading && !first.data ? (
        <Loading what="the audit log" />
      ) : rows.length === 0 ? (
        <p>No entries.</p>
      ) : (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Audit table">
          <table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Actor</th>
                <th scope="col">Action</th>
                <th scope="col">Customer</th>
                <th scope="col">Run</th>
                <th scope="col">Detail</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((e, i) => (
                <tr key={`${e.at}-${e.action}-${e.runId ?? ""}-${i}`}>
                  <td>
                    <Time value={e.at} />
                  </td>
                  <td>{e.actor ?? "—"}</td>
                  <td>
                    <code>{e.action}</code>
                  </td>
                  <td>
                    {e.customerId ? (
                      <Link to={`/customers/${encodeURIComponent(e.customerId)}`}>{e.customerId}</Link>
                    ) : (
                      "—"
                    )}
                  </td>
                  <td>
                    {e.runId ? (
                      <Link to={`/runs/${e.runId}`} aria-label={`Run ${e.runId}`}>
                        {e.runId.slice(0, 8)}
                      </Link>
                    ) : (
                      "—"
                    )}
                  </td>
                  <td className="detail">{detailText(e.detail)}</td>
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
