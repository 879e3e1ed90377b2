/**
 * Customer › Restore: pick a backup, what to restore, an optional target database, and type
 * the domain to confirm (a restore overwrites the live shop).
 */
import { useState, type FormEvent } from "react";
import { api, call, errorText, type Schemas } from "../api/client";
import { ErrorAlert, Loading } from "../components/ui";
import { useSession } from "../lib/context";
import { formatBytes, formatExact } from "../lib/format";
import { useLoad } from "../lib/hooks";

type RestoreInclude = Required<{ [K in keyof Schemas["RestoreInclude"]]: boolean }>;

/** The restore's include toggles (the API's names), all on by default. */
export const RESTORE_TOGGLES: { key: keyof RestoreInclude; label: string }[] = [
  { key: "db", label: "Database" },
  { key: "services", label: "Services (backend, admin, store)" },
  { key: "uploads", label: "Uploads" },
  { key: "envPm2", label: ".env + PM2" },
];

export interface RestoreTabProps {
  customerId: string;
  domain: string;
  onRunStarted: (runId: string) => void;
}

export function RestoreTab({ customerId, domain, onRunStarted }: RestoreTabProps) {
  const { canOperate } = useSession();
  const history = useLoad(
    () =>
      call(api.GET("/api/customers/{id}/backups", { params: { path: { id: customerId }, query: { limit: 1000 } } })),
    [customerId],
  );
  const [backup, setBackup] = useState("");
  const [include, setInclude] = useState<RestoreInclude>({ db: true, services: true, uploads: true, envPm2: true });
  const [targetDb, setTargetDb] = useState("");
  const [confirm, setConfirm] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [started, setStarted] = useState<string | null>(null);

  const backups = (history.data?.backups ?? []).filter(
    (b): b is typeof b & { backupId: string } => Boolean(b.backupId) && b.result !== "deleted",
  );
  const chosen = backup || backups[0]?.backupId || "";
  const confirmed = confirm.trim() === domain;

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!confirmed || !chosen) return;
    setBusy(true);
    setError(null);
    try {
      const run = await call(
        api.POST("/api/customers/{id}/restores", {
          params: { path: { id: customerId } },
          body: { backup: chosen, include, targetDb: targetDb.trim() || null },
        }),
      );
      setConfirm("");
      setStarted(run.runId);
      onRunStarted(run.runId);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  if (!canOperate) {
    return (
      <>
        <h2>Restore</h2>
        <p>Restores are started by operators and admins.</p>
      </>
    );
  }

  return (
    <>
      <h2>Restore</h2>
      <ErrorAlert error={history.error} />
      {history.loading && !history.data ? (
        <Loading what="the backups" />
      ) : backups.length === 0 ? (
        <p>There is no backup to restore from yet.</p>
      ) : (
        <form onSubmit={submit} className="stack">
          <div className="row">
            <label htmlFor="restore-backup">Backup</label>
            <select id="restore-backup" value={chosen} onChange={(e) => setBackup(e.target.value)}>
              {backups.map((b) => (
                <option key={b.backupId} value={b.backupId}>
                  {b.backupId} — {b.type}, {formatBytes(b.size)}, {formatExact(b.date)}
                </option>
              ))}
            </select>
          </div>
          <fieldset>
            <legend>What to restore</legend>
            {RESTORE_TOGGLES.map((t) => (
              <label key={t.key} className="check">
                <input
                  type="checkbox"
                  checked={include[t.key]}
                  onChange={(e) => setInclude((i) => ({ ...i, [t.key]: e.target.checked }))}
                />
                {t.label}
              </label>
            ))}
          </fieldset>
          <div className="row">
            <label htmlFor="restore-target-db">Target database</label>
            <input
              id="restore-target-db"
              placeholder="optional: an existing database instead of the shop's own"
              pattern="[A-Za-z0-9_][A-Za-z0-9_\-]{0,62}"
              value={targetDb}
              onChange={(e) => setTargetDb(e.target.value)}
            />
          </div>
          <div className="row">
            <label htmlFor="restore-confirm">Type the domain to confirm</label>
            <input
              id="restore-confirm"
              autoComplete="off"
              spellCheck={false}
              placeholder={domain}
              aria-describedby="restore-warning"
              value={confirm}
              onChange={(e) => setConfirm(e.target.value)}
            />
          </div>
          <p id="restore-warning" className="hint">
            A restore overwrites what it restores on <strong>{domain}</strong> (into the target
            database instead, when you name one).
          </p>
          <ErrorAlert error={error} />
          <div className="actions">
            <button type="submit" className="danger" disabled={!confirmed || busy}>
              Restore
            </button>
          </div>
          {started && <p role="status">Restore started: follow it in the live run panel above.</p>}
        </form>
      )}
    </>
  );
}
