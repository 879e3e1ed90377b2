/**
 * One customer: its domain, its schedules, the live run panel while it has a run, and the tabs Backups,
 * Upgrades and Restore.
 */
import { useCallback, useContext, useEffect, useRef, useState, type KeyboardEvent } from "react";
import { api, call } from "../api/client";
import { LiveRunPanel } from "../components/LiveRunPanel";
import { Schedules } from "../components/Schedules";
import { ErrorAlert, Loading } from "../components/ui";
import { LiveContext, useSession } from "../lib/context";
import { useLiveRun, useLoad } from "../lib/hooks";
import { Link } from "../lib/router";
import { BackupsTab } from "./BackupsTab";
import { RestoreTab } from "./RestoreTab";
import { UpgradesTab } from "./UpgradesTab";

const TABS = [
  { key: "backups", label: "Backups" },
  { key: "upgrades", label: "Upgrades" },
  { key: "restore", label: "Restore" },
] as const;
type TabKey = (typeof TABS)[number]["key"];

export function CustomerPage({ id, tab }: { id: string; tab?: string }) {
  const { canOperate } = useSession();
  const liveSource = useContext(LiveContext);
  const customer = useLoad(() => call(api.GET("/api/customers/{id}", { params: { path: { id } } })), [id]);
  const [selected, setSelected] = useState<TabKey>(
    TABS.some((t) => t.key === tab) ? (tab as TabKey) : "backups",
  );
  const [runId, setRunId] = useState<string | null>(null);
  const [historyVersion, setHistoryVersion] = useState(0);
  const live = useLiveRun(
    runId,
    useCallback(() => setHistoryVersion((v) => v + 1), []),
  );
  const runEnded = useRef(true);
  runEnded.current = !runId || Boolean(live.state?.outcome);

  // A run already going when the page opens.
  useEffect(() => {
    let active = true;
    call(api.GET("/api/runs", { params: { query: { customer: id, state: ["queued", "running"], limit: 10 } } })).then(
      (list) => {
        const going = list.runs.find((r) => r.state === "queued" || r.state === "running");
        if (active && going) setRunId((cur) => cur ?? going.id);
      },
      () => {},
    );
    return () => {
      active = false;
    };
  }, [id]);

  // Runs started elsewhere (another person, installer-api, the CLI) show up here too.
  useEffect(
    () =>
      liveSource.watchCustomer(id, (event) => {
        const rid = event.data.runId;
        if (typeof rid !== "string" || /-(completed|failed)$/.test(event.name)) return;
        setRunId((cur) => (cur === rid ? cur : runEnded.current ? rid : cur));
      }),
    [id, liveSource],
  );

  const started = useCallback((newRunId: string) => setRunId(newRunId), []);

  function select(key: TabKey, focus = false) {
    setSelected(key);
    // Keep the tab in the address without a new history entry (and without a route change).
    window.history.replaceState(null, "", `#/customers/${encodeURIComponent(id)}/${key}`);
    if (focus) document.getElementById(`tab-${key}`)?.focus();
  }

  function onTabKey(e: KeyboardEvent) {
    const i = TABS.findIndex((t) => t.key === selected);
    const to =
      e.key === "ArrowRight" ? (i + 1) % TABS.length
      : e.key === "ArrowLeft" ? (i + TABS.length - 1) % TABS.length
      : e.key === "Home" ? 0
      : e.key === "End" ? TABS.length - 1
      : -1;
    if (to >= 0) {
      e.preventDefault();
      select(TABS[to].key, true);
    }
  }

  if (customer.error) {
    return (
      <>
        <h1>Customer {id}</h1>
        <ErrorAlert error={customer.error} />
        <Link to="/customers">Back to the customers</Link>
      </>
    );
  }
  if (!customer.data) return <Loading what={`customer ${id}`} />;
  const c = customer.data;

  return (
    <>
      <p className="crumbs">
        <Link to="/customers">Customers</Link> ›
      </p>
      <h1 id="customer-title">{c.domain}</h1>
      <p className="muted">
        id {c.id} · tier {c.tier ?? "none"}
      </p>
      <Schedules customerId={id} />
      {live.state && <LiveRunPanel state={live.state} run={live.run} canOperate={canOperate} />}
      <div role="tablist" aria-labelledby="customer-title" className="tabs" onKeyDown={onTabKey}>
        {TABS.map((t) => (
          <button
            key={t.key}
            id={`tab-${t.key}`}
            type="button"
            role="tab"
            aria-selected={selected === t.key}
            aria-controls={`panel-${t.key}`}
            tabIndex={selected === t.key ? 0 : -1}
            onClick={() => select(t.key)}
          >
            {t.label}
          </button>
        ))}
      </div>
      <div role="tabpanel" id={`panel-${selected}`} aria-labelledby={`tab-${selected}`} className="tabpanel">
        {selected === "backups" && (
          <BackupsTab customerId={id} version={historyVersion} onRunStarted={started} />
        )}
        {selected === "upgrades" && <UpgradesTab customerId={id} live={live} onRunStarted={started} />}
        {selected === "restore" && (
          <RestoreTab customerId={id} domain={c.domain} onRunStarted={started} />
        )}
      </div>
    </>
  );
}
