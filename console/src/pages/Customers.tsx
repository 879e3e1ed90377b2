/** Customers: filter, the table (node, release, last backup, active run), register a customer. */
import { useEffect, useState, type FormEvent } from "react";
import { api, call, errorText } from "../api/client";
import type { CustomerSummary } from "../api/client";
import { Dialog, ErrorAlert, Loading, ProgressBar, StateBadge, Time } from "../components/ui";
import { useSession } from "../lib/context";
import { formatBytes, isOverdue, OVERDUE_HOURS } from "../lib/format";
import { useLoad } from "../lib/hooks";
import { Link } from "../lib/router";

const PAGE = 100;

export function Customers() {
  const { canOperate } = useSession();
  const [filter, setFilter] = useState("");
  const [q, setQ] = useState("");
  const [more, setMore] = useState<CustomerSummary[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [moreError, setMoreError] = useState<string | null>(null);
  const [registering, setRegistering] = useState(false);

  // Ask the host once typing pauses.
  useEffect(() => {
    const t = setTimeout(() => setQ(filter.trim()), 250);
    return () => clearTimeout(t);
  }, [filter]);

  const first = useLoad(async () => {
    const page = await call(
      api.GET("/api/customers", { params: { query: { q: q || undefined, limit: PAGE } } }),
    );
    setMore([]);
    setNext(page.nextBefore ?? null);
    return page.customers;
  }, [q]);

  async function loadMore() {
    if (!next) return;
    try {
      const page = await call(
        api.GET("/api/customers", { params: { query: { q: q || undefined, limit: PAGE, before: next } } }),
      );
      setMore((m) => [...m, ...page.customers]);
      setNext(page.nextBefore ?? null);
      setMoreError(null);
    } catch (e) {
      setMoreError(errorText(e));
    }
  }

  const rows = [...(first.data ?? []), ...more];

  return (
    <>
      <div className="page-head">
        <h1>Customers</h1>
        {canOperate && (
          <button type="button" className="primary" onClick={() => setRegistering(true)}>
            Register customer
          </button>
        )}
      </div>
      <div className="filters">
        <label htmlFor="customer-filter">Filter customers</label>
        <input
          id="customer-filter"
          type="search"
          placeholder="domain or id"
          value={filter}
          onChange={(e) => setFilter(e.target.value)}
        />
      </div>
      <ErrorAlert error={first.error} />
      {first.loading && !first.data ? (
        <Loading what="customers" />
      ) : (
        <CustomerTable rows={rows} />
      )}
      {next && (
        <button type="button" onClick={loadMore}>
          Load more
        </button>
      )}
      <ErrorAlert error={moreError} />
      {canOperate && (
        <RegisterDialog
          open={registering}
          onClose={() => setRegistering(false)}
          onDone={() => {
            setRegistering(false);
            first.reload();
          }}
        />
      )}
    </>
  );
}

function CustomerTable({ rows }: { rows: CustomerSummary[] }) {
  if (rows.length === 0) return <p>No customers match.</p>;
  return (
    <div className="table-wrap" tabIndex={0} role="region" aria-label="Customers table">
      <table>
        <thead>
          <tr>
            <th scope="col">Domain</th>
            <th scope="col">Tier</th>
            <th scope="col">Node</th>
            <th scope="col">Layout</th>
            <th scope="col">Release</th>
            <th scope="col">Last backup</th>
            <th scope="col">Active run</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((c) => (
            <tr key={c.id}>
              <td>
                <Link to={`/customers/${encodeURIComponent(c.id)}`}>{c.domain}</Link>
                <div className="muted small">id {c.id}</div>
              </td>
              <td>{c.tier ?? "—"}</td>
              <td>
                {c.node ?? (
                  <span className="muted" title="no node has claimed it yet: the host that has its folder will">
                    none yet
                  </span>
                )}
              </td>
              <td>{c.layout}</td>
              <td>{c.release ?? "—"}</td>
              <td>
                <LastBackupCell c={c} />
              </td>
              <td>
                {c.activeRun ? (
                  <div className="active-run">
                    <Link to={`/runs/${c.activeRun.runId}`}>
                      {c.activeRun.pipeline} <StateBadge state={c.activeRun.state} />
                    </Link>
                    <ProgressBar
                      value={c.activeRun.percent ?? 0}
                      label={`${c.domain}: ${c.activeRun.pipeline} progress`}
                    />
                    {c.activeRun.step && <div className="muted small">{c.activeRun.step}</div>}
                  </div>
                ) : (
                  "—"
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function LastBackupCell({ c }: { c: CustomerSummary }) {
  const b = c.lastBackup;
  const overdue = isOverdue(b?.date);
  const flag = overdue ? (
    <strong className="overdue" title={`no backup in the last ${OVERDUE_HOURS} h`}>
      overdue
    </strong>
  ) : null;
  if (!b) return <span>none {flag}</span>;
  return (
    <span>
      <Time value={b.date} /> · {b.result}
      {b.size != null && <> · {formatBytes(b.size)}</>} {flag}
    </span>
  );
}

function RegisterDialog({
  open,
  onClose,
  onDone,
}: {
  open: boolean;
  onClose: () => void;
  onDone: () => void;
}) {
  const [id, setId] = useState("");
  const [domain, setDomain] = useState("");
  const [tier, setTier] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await call(
        api.PUT("/api/customers/{id}", {
          params: { path: { id: id.trim() } },
          body: { domain: domain.trim().toLowerCase(), tier: tier.trim() || null },
        }),
      );
      setId("");
      setDomain("");
      setTier("");
      onDone();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Dialog open={open} title="Register customer" onClose={onClose}>
      <form onSubmit={submit} className="stack">
        <label htmlFor="reg-id">Customer id</label>
        <input
          id="reg-id"
          required
          pattern="[A-Za-z0-9_\-]{1,64}"
          title="1-64 letters, digits, - or _ (installer-api's id)"
          value={id}
          onChange={(e) => setId(e.target.value)}
        />
        <label htmlFor="reg-domain">Domain</label>
        <input
          id="reg-domain"
          required
          placeholder="shop.example.com"
          value={domain}
          onChange={(e) => setDomain(e.target.value)}
        />
        <label htmlFor="reg-tier">Tier</label>
        <input
          id="reg-tier"
          placeholder="optional, e.g. paid"
          value={tier}
          onChange={(e) => setTier(e.target.value)}
        />
        <ErrorAlert error={error} />
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>
            Register
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </Dialog>
  );
}
