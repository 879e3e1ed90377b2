/**
 * A customer's schedules in one line each: what runs on its own, when next, and how its last
 * slot went (queued, skipped with the reason, missed), from `GET /api/schedules`.
 */
import { api, call, type Schemas } from "../api/client";
import { useLoad } from "../lib/hooks";
import { Time } from "./ui";

type Schedule = Schemas["Schedule"];

function origin(s: Schedule): string {
  return s.origin === "customer" ? "its own" : s.origin.replace(/^tier:/, "tier ");
}

function Last({ s }: { s: Schedule }) {
  if (!s.last) return null;
  return (
    <>
      {" · last: "}
      <span className={s.last.outcome === "queued" ? undefined : "warn"}>{s.last.outcome}</span>
      {s.last.reason ? ` (${s.last.reason})` : ""}
    </>
  );
}

/** The schedules of customer `customerId`; nothing when it has none. */
export function Schedules({ customerId }: { customerId: string }) {
  const loaded = useLoad(
    () => call(api.GET("/api/schedules", { params: { query: { customer: customerId } } })),
    [customerId],
  );
  const list = loaded.data?.schedules ?? [];
  if (list.length === 0) return null;
  return (
    <ul className="schedules" aria-label="Schedules">
      {list.map((s) => (
        <li key={s.pipeline}>
          <strong>{s.pipeline}</strong> {s.at} ({origin(s)})
          {s.error ? (
            <span className="warn"> · cannot run: {s.error}</span>
          ) : s.due ? (
            " · due now"
          ) : s.nextRunAt ? (
            <>
              {" · next "}
              <Time value={s.nextRunAt} />
            </>
          ) : null}
          <Last s={s} />
        </li>
      ))}
    </ul>
  );
}
