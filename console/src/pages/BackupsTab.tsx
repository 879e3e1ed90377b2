/**
 * Customer › Backups: New backup (Fast or Custom with the plan's five toggles), the history
 * (with each backup's newest restore drill),
 * and per backup Download (signed link, then the browser downloads), Verify and Delete.
 */
import { useState, type FormEvent } from "react";
import { api, call, errorText, type Schemas } from "../api/client";
import { Dialog, ErrorAlert, Loading, StateBadge, Time } from "../components/ui";
import { useSession } from "../lib/context";
import { formatBytes, formatDuration } from "../lib/format";
import { useLoad } from "../lib/hooks";

type Entry = Schemas["BackupHistoryEntry"];
type Include = Required<{ [K in keyof Schemas["BackupInclude"]]: boolean }>;

const PAGE = 100;

/** The plan's five toggles, with their defaults (the API's `include` names). */
export const INCLUDE_TOGGLES: { key: keyof Include; label: string; on: boolean }[] = [
  { key: "db", label: "Database", on: true },
  { key: "uploads", label: "Uploads", on: true },
  { key: "envPm2", label: ".env + PM2", on: true },
  { key: "logs", label: "Logs", on: false },
  { key: "artifacts", label: "Artifacts", on: false },
];

export interface BackupsTabProps {
  customerId: string;
  /** Bumped when a run ends, to read the history again. */
  version: number;
  onRunStarted: (runId: string) => void;
}

export function BackupsTab({ customerId, version, onRunStarted }: BackupsTabProps) {
  const { canOperate } = useSession();
  const [creating, setCreating] = useState(false);
  const [more, setMore] = useState<Entry[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [downloading, setDownloading] = useState<string | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);

  const history = useLoad(async () => {
    const page = await call(
      api.GET("/api/customers/{id}/backups", { params: { path: { id: customerId }, query: { limit: PAGE } } }),
    );
    setMore([]);
    setNext(page.nextBefore ?? null);
    return page.backups;
  }, [customerId, version]);

  async function loadMore() {
    if (!next) return;
    try {
      const page = await call(
        api.GET("/api/customers/{id}/backups", {
          params: { path: { id: customerId }, query: { limit: PAGE, before: next } },
        }),
      );
      setMore((m) => [...m, ...page.backups]);
      setNext(page.nextBefore ?? null);
    } catch (e) {
      setError(errorText(e));
    }
  }

  async function verify(backupId: string) {
    setError(null);
    try {
      const run = await call(
        api.POST("/api/customers/{id}/backups/{backupId}/verify", {
          params: { path: { id: customerId, backupId } },
          body: {},
        }),
      );
      onRunStarted(run.runId);
    } catch (e) {
      setError(errorText(e));
    }
  }

  const rows = [...(history.data ?? []), ...more];

  return (
    <>
      <div className="page-head">
        <h2>Backups</h2>
        {canOperate && (
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            New backup
          </button>
        )}
      </div>
      <ErrorAlert error={history.error ?? error} />
      {history.loading && !history.data ? (
        <Loading what="the backup history" />
      ) : rows.length === 0 ? (
        <p>No backups yet.</p>
      ) : (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Backup history">
          <table>
            <thead>
              <tr>
                <th scope="col">Date</th>
                <th scope="col">Type</th>
                <th scope="col">Size</th>
                <th scope="col">Duration</th>
                <th scope="col">Result</th>
                <th scope="col">Triggered by</th>
                <th scope="col">Restore drill</th>
                {canOperate && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {rows.map((b) => (
                <tr key={b.runId}>
                  <td>
                    <Time value={b.date} />
                    {b.backupId && <div className="muted small">{b.backupId}</div>}
                  </td>
                  <td>{b.type}</td>
                  <td>{formatBytes(b.size)}</td>
                  <td>{formatDuration(b.durationMs)}</td>
                  <td>
                    <StateBadge state={b.result} />
                    {b.note && <div className="muted small">{b.note}</div>}
                  </td>
                  <td>{b.triggeredBy ?? "—"}</td>
                  <td>
                    <Drill entry={b} />
                  </td>
                  {canOperate && (
                    <td>
                      <RowActions
                        entry={b}
                        onDownload={setDownloading}
                        onVerify={verify}
                        onDelete={setDeleting}
                      />
                    </td>
                  )}
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
      {canOperate && (
        <>
          <NewBackupDialog
            open={creating}
            customerId={customerId}
            onClose={() => setCreating(false)}
            onStarted={(runId) => {
              setCreating(false);
              onRunStarted(runId);
            }}
          />
          <DownloadDialog
            customerId={customerId}
            backupId={downloading}
            onClose={() => setDownloading(null)}
          />
          <DeleteDialog
            customerId={customerId}
            backupId={deleting}
            onClose={() => setDeleting(null)}
            onDeleted={() => {
              setDeleting(null);
              history.reload();
            }}
          />
        </>
      )}
    </>
  );
}

function RowActions({
  entry,
  onDownload,
  onVerify,
  onDelete,
}: {
  entry: Entry;
  onDownload: (id: string) => void;
  onVerify: (id: string) => void;
  onDelete: (id: string) => void;
}) {
  const id = entry.backupId;
  // Only a backup that is there can be downloaded, verified or deleted.
  if (!id || entry.result === "deleted") return <span className="muted">—</span>;
  const pinned = entry.pinned;
  return (
    <div className="row-actions">
      <button type="button" aria-label={`Download ${id}`} onClick={() => onDownload(id)}>
        Download
      </button>
      <button type="button" aria-label={`Verify ${id}`} onClick={() => onVerify(id)}>
        Verify
      </button>
      <button
        type="button"
        className="danger"
        aria-label={`Delete ${id}`}
        disabled={Boolean(pinned)}
        title={pinned ? `pinned: ${pinned}` : undefined}
        aria-describedby={pinned ? `pin-${id}` : undefined}
        onClick={() => onDelete(id)}
      >
        Delete
      </button>
      {pinned && (
        <span id={`pin-${id}`} className="pinned small">
          pinned: {pinned}
        </span>
      )}
    </div>
  );
}

export function NewBackupDialog({
  open,
  customerId,
  onClose,
  onStarted,
}: {
  open: boolean;
  customerId: string;
  onClose: () => void;
  onStarted: (runId: string) => void;
}) {
  const [kind, setKind] = useState<"fast" | "custom">("fast");
  const [include, setInclude] = useState<Include>(
    () => Object.fromEntries(INCLUDE_TOGGLES.map((t) => [t.key, t.on])) as Include,
  );
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body: Schemas["CreateBackup"] = kind === "fast" ? { type: "fast" } : { type: "custom", include };
      const run = await call(
        api.POST("/api/customers/{id}/backups", { params: { path: { id: customerId } }, body }),
      );
      onStarted(run.runId);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Dialog open={open} title="New backup" onClose={onClose}>
      <form onSubmit={submit} className="stack">
        <fieldset>
          <legend>Type</legend>
          <label className="check">
            <input type="radio" name="backup-type" checked={kind === "fast"} onChange={() => setKind("fast")} />
            Fast (recommended)
          </label>
          <p className="hint">Database, uploads, .env and PM2 files; no logs or build output.</p>
          <label className="check">
            <input type="radio" name="backup-type" checked={kind === "custom"} onChange={() => setKind("custom")} />
            Custom
          </label>
        </fieldset>
        {kind === "custom" && (
          <fieldset>
            <legend>Include</legend>
            {INCLUDE_TOGGLES.map((t) => (
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
        )}
        <ErrorAlert error={error} />
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>
            Start backup
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function DownloadDialog({
  customerId,
  backupId,
  onClose,
}: {
  customerId: string;
  backupId: string | null;
  onClose: () => void;
}) {
  const [error, setError] = useState<string | null>(null);
  const detail = useLoad(
    () =>
      backupId
        ? call(api.GET("/api/customers/{id}/backups/{backupId}", { params: { path: { id: customerId, backupId } } }))
        : Promise.resolve(undefined),
    [customerId, backupId],
  );

  async function download(file: string | null) {
    if (!backupId) return;
    setError(null);
    try {
      const link = await call(
        api.POST("/api/customers/{id}/backups/{backupId}/download-url", {
          params: { path: { id: customerId, backupId } },
          body: file ? { file } : {},
        }),
      );
      // The signed link needs no session: the browser downloads it as a file.
      window.location.assign(link.url);
    } catch (e) {
      setError(errorText(e));
    }
  }

  return (
    <Dialog open={backupId != null} title={`Download ${backupId ?? ""}`} onClose={onClose}>
      <ErrorAlert error={detail.error ?? error} />
      {detail.loading && !detail.data ? (
        <Loading what="the backup's files" />
      ) : (
        <ul className="plain stack">
          {(detail.data?.artifacts ?? []).map((a) => (
            <li key={a.file}>
              <button type="button" onClick={() => download(a.file)}>
                Download {a.file}
              </button>{" "}
              <span className="muted small">{formatBytes(a.size)}</span>
            </li>
          ))}
          <li>
            <button type="button" className="primary" onClick={() => download(null)}>
              Download whole backup
            </button>{" "}
            {detail.data && <span className="muted small">{formatBytes(detail.data.size)}, as a tar</span>}
          </li>
        </ul>
      )}
      <p className="hint">Each link works for 15 minutes and is recorded in the audit log.</p>
    </Dialog>
  );
}

export function DeleteDialog({
  customerId,
  backupId,
  onClose,
  onDeleted,
}: {
  customerId: string;
  backupId: string | null;
  onClose: () => void;
  onDeleted: () => void;
}) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function remove() {
    if (!backupId) return;
    setBusy(true);
    setError(null);
    try {
      await call(
        api.DELETE("/api/customers/{id}/backups/{backupId}", { params: { path: { id: customerId, backupId } } }),
      );
      onDeleted();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Dialog
      open={backupId != null}
      title={`Delete backup ${backupId ?? ""}`}
      onClose={() => {
        setError(null);
        onClose();
      }}
    >
      <p>
        This removes backup <strong>{backupId}</strong> from disk. It cannot be undone.
      </p>
      <ErrorAlert error={error} />
      <div className="actions">
        <button type="button" className="danger" onClick={remove} disabled={busy}>
          Delete backup
        </button>
        <button type="button" onClick={onClose}>
          Keep it
        </button>
      </div>
    </Dialog>
  );
}

/** The newest restore drill of a backup: restorable or not (with the reason), and when. */
function Drill({ entry }: { entry: Entry }) {
  if (entry.restorable === null || entry.restorable === undefined) return <span className="muted">—</span>;
  return (
    <>
      {entry.restorable ? <span className="ok">restorable</span> : <strong className="overdue">not restorable</strong>}{" "}
      <Time value={entry.drilledAt} />
      {!entry.restorable && entry.drillReason && <div className="muted small">{entry.drillReason}</div>}
    </>
  );
}
