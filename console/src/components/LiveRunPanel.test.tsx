import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { useSession } from "../lib/context";
import { useLiveRun } from "../lib/hooks";
import { initialRun, reduceRun, type LiveEvent } from "../lib/liveRun";
import { FakeLive, mockApi, renderAs } from "../test/helpers";
import { LiveRunPanel } from "./LiveRunPanel";

const RUN = "0193aaaa-0000-7000-8000-000000000001";
const run = {
  id: RUN, customerId: "42", pipeline: "backup", params: {}, state: "running", createdAt: "2026-11-26T10:00:00Z",
  startedAt: "2026-11-26T10:00:00Z", finishedAt: null, error: null, backupId: null, progress: 0, message: null,
  triggeredBy: "ayse", cancelRequested: false, eventsUrl: "", preflight: null, warnings: [],
};

const progress = (seq: number, data: Record<string, unknown>): LiveEvent => ({
  name: "backup-progress",
  data: { runId: RUN, customerId: "42", seq, ...data },
});

function Harness() {
  const { state, run: r } = useLiveRun(RUN);
  const { canOperate } = useSession();
  return state ? <LiveRunPanel state={state} run={r} canOperate={canOperate} /> : null;
}

describe("live run", () => {
  it("reduces progress, steps, warnings and the end", () => {
    const events: LiveEvent[] = [
      progress(1, { percent: 0, step: null, message: "queued" }),
      progress(2, { percent: 0, step: null, message: "started" }),
      progress(3, { percent: 5, step: "db-dump", message: "started" }),
      progress(4, { percent: 30, step: "db-dump", message: "dumping: 10 MB", etaSeconds: 72 }),
      progress(5, { percent: 31, step: "db-dump", message: "warning: free space low", warning: "db-dump: free space low", warnings: ["db-dump: free space low"] }),
      progress(6, { percent: 50, step: "db-dump", message: "done" }),
      // An out-of-order lower percent never moves the bar back.
      progress(7, { percent: 40, step: "archive-uploads", message: "started" }),
      { name: "backup-completed", data: { runId: RUN, seq: 8, backupId: "20261126-101500", size: 5_000_000, durationMs: 72_000 } },
    ];
    const s = events.reduce(reduceRun, initialRun(RUN));
    expect(s.percent).toBe(100);
    expect(s.steps).toEqual([
      { id: "db-dump", status: "done", message: "dumping: 10 MB" },
      // Completed: a step still shown as going ended well.
      { id: "archive-uploads", status: "done", message: null },
    ]);
    expect(s.warnings).toEqual(["db-dump: free space low"]);
    expect(s.log.map((l) => l.text)).toEqual([
      "queued",
      "run started",
      "db-dump: started",
      "db-dump: warning: free space low",
      "db-dump: done",
      "archive-uploads: started",
      "run ended: succeeded",
    ]);
    expect(s.outcome).toMatchObject({ kind: "completed", backupId: "20261126-101500", size: 5_000_000 });
    // Events of another run are not this run's.
    expect(reduceRun(s, { name: "backup-failed", data: { runId: "other", state: "failed" } })).toBe(s);
  });

  it("tells a cancelled run from a failed one", () => {
    const cancelled = reduceRun(initialRun(RUN), { name: "backup-failed", data: { runId: RUN, state: "cancelled", error: "cancelled" } });
    expect(cancelled.outcome?.kind).toBe("cancelled");
    const failed = reduceRun(initialRun(RUN), { name: "upgrade-failed", data: { runId: RUN, state: "failed", error: "build failed", failedStep: "build", rolledBack: ["swap"] } });
    expect(failed.outcome).toMatchObject({ kind: "failed", failedStep: "build", rolledBack: ["swap"] });
  });

  it("shows the panel move from progress to Completed as events arrive", async () => {
    const calls = mockApi({ [`GET /api/runs/${RUN}`]: { body: run }, [`POST /api/runs/${RUN}/cancel`]: { status: 202, body: run } });
    const live = new FakeLive();
    renderAs("operator", <Harness />, live);
    const region = await screen.findByRole("region", { name: "Live run" });
    await waitFor(() => expect(live.runWatchers.get(RUN)?.size).toBe(1));

    act(() => {
      live.emit(RUN, "backup-progress", { seq: 1, percent: 12.5, step: "db-dump", message: "started" });
      live.emit(RUN, "backup-progress", { seq: 2, percent: 41.7, step: "db-dump", message: "dumping", etaSeconds: 72, warnings: ["db-dump: free space low"] });
    });
    const bar = within(region).getByRole("progressbar");
    expect(bar.getAttribute("aria-valuenow")).toBe("41.7");
    expect(within(region).getByText("Step: db-dump")).toBeTruthy();
    expect(within(region).getByText("about 1 m 12 s left")).toBeTruthy();
    expect(within(region).getByText(/free space low/)).toBeTruthy();
    const log = within(region).getByRole("list", { name: "Run log" });
    expect(within(log).getByText("db-dump: started")).toBeTruthy();

    const user = userEvent.setup();
    await user.click(within(region).getByRole("button", { name: "Cancel run" }));
    await waitFor(() => expect(calls.some((c) => c.method === "POST" && c.path.endsWith("/cancel"))).toBe(true));

    act(() => {
      live.emit(RUN, "backup-completed", { seq: 3, backupId: "20261126-101500", size: 5_000_000, durationMs: 72_000 });
    });
    expect(within(region).getByText("Completed")).toBeTruthy();
    expect(bar.getAttribute("aria-valuenow")).toBe("100");
    expect(within(region).queryByRole("button", { name: "Cancel run" })).toBeNull();
  });

  it("shows Failed with the error", async () => {
    mockApi({ [`GET /api/runs/${RUN}`]: { body: run } });
    const live = new FakeLive();
    renderAs("viewer", <Harness />, live);
    const region = await screen.findByRole("region", { name: "Live run" });
    // Viewers cannot cancel.
    expect(within(region).queryByRole("button")).toBeNull();
    await waitFor(() => expect(live.runWatchers.get(RUN)?.size).toBe(1));
    act(() => live.emit(RUN, "backup-failed", { seq: 1, state: "failed", error: "pg_dump exited with 1" }));
    expect(within(region).getByText("Failed")).toBeTruthy();
    expect(within(region).getByText(/pg_dump exited with 1/, { selector: "span" })).toBeTruthy();
  });
});
