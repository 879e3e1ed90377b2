import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { mockApi, renderAs } from "../test/helpers";
import { BackupsTab } from "./BackupsTab";

const entry = (backupId: string, extra: Record<string, unknown> = {}) => ({
  date: "2026-11-26T10:15:00Z",
  type: "fast",
  size: 524_288_000,
  durationMs: 72_000,
  result: "succeeded",
  triggeredBy: "ayse",
  runId: `run-${backupId}`,
  backupId,
  note: null,
  pinned: null,
  ...extra,
});

const history = {
  customer: "42",
  backups: [entry("20261126-101500"), entry("20261125-020000", { type: "pre-upgrade", pinned: "pre-upgrade to v1.1.0" })],
};

const drilled = {
  customer: "42",
  backups: [
    entry("20261126-101500", { restorable: true, drilledAt: "2026-11-26T11:00:00Z", drillReason: null }),
    entry("20261125-020000", { restorable: false, drilledAt: "2026-11-26T11:05:00Z", drillReason: "db.dump does not restore: pg_restore exited with code 1" }),
    entry("20261124-020000", { restorable: null, drilledAt: null, drillReason: null }),
  ],
};

describe("Backups tab", () => {
  it("shows each backup's newest restore drill, with the reason a backup is not restorable", async () => {
    mockApi({ "GET /api/customers/42/backups": { body: drilled } });
    renderAs("viewer", <BackupsTab customerId="42" version={0} onRunStarted={() => {}} />);
    const good = (await screen.findByText("20261126-101500")).closest("tr")!;
    expect(within(good).getByText("restorable")).toBeTruthy();
    const bad = screen.getByText("20261125-020000").closest("tr")!;
    expect(within(bad).getByText("not restorable")).toBeTruthy();
    expect(within(bad).getByText("db.dump does not restore: pg_restore exited with code 1")).toBeTruthy();
    const never = screen.getByText("20261124-020000").closest("tr")!;
    expect(within(never).queryByText(/restorable/)).toBeNull();
  });

  it("shows the history for people, and a viewer no mutating buttons at all", async () => {
    mockApi({ "GET /api/customers/42/backups": { body: history } });
    renderAs("viewer", <BackupsTab customerId="42" version={0} onRunStarted={() => {}} />);
    expect(await screen.findAllByText("524 MB")).toHaveLength(2);
    expect(screen.getAllByText("1 m 12 s")).toHaveLength(2);
    expect(screen.queryByRole("button", { name: "New backup" })).toBeNull();
    expect(screen.queryByRole("button", { name: /^(Delete|Verify|Download) / })).toBeNull();
    expect(screen.queryAllByRole("button")).toHaveLength(0);
  });

  it("starts a custom backup with the toggles the person chose", async () => {
    const calls = mockApi({
      "GET /api/customers/42/backups": { body: history },
      "POST /api/customers/42/backups": { status: 202, body: { runId: "r-1", customer: "42", pipeline: "backup", state: "queued", runUrl: "", eventsUrl: "" } },
    });
    const started = vi.fn();
    const user = userEvent.setup();
    renderAs("operator", <BackupsTab customerId="42" version={0} onRunStarted={started} />);
    await user.click(await screen.findByRole("button", { name: "New backup" }));
    const dialog = screen.getByRole("dialog", { name: "New backup" });
    expect((within(dialog).getByLabelText("Fast (recommended)") as HTMLInputElement).checked).toBe(true);
    // The toggles show only for Custom, with the plan's defaults.
    expect(within(dialog).queryByLabelText("Logs")).toBeNull();
    await user.click(within(dialog).getByLabelText("Custom"));
    const defaults = ["Database", "Uploads", ".env + PM2", "Logs", "Artifacts"].map(
      (l) => (within(dialog).getByLabelText(l) as HTMLInputElement).checked,
    );
    expect(defaults).toEqual([true, true, true, false, false]);
    await user.click(within(dialog).getByLabelText("Logs"));
    await user.click(within(dialog).getByLabelText("Uploads"));
    await user.click(within(dialog).getByRole("button", { name: "Start backup" }));
    await waitFor(() => expect(started).toHaveBeenCalledWith("r-1"));
    const post = calls.find((c) => c.method === "POST");
    expect(post?.body).toEqual({
      type: "custom",
      include: { db: true, uploads: false, envPm2: true, logs: true, artifacts: false },
    });
  });

  it("sends a fast backup as fast", async () => {
    const calls = mockApi({
      "GET /api/customers/42/backups": { body: history },
      "POST /api/customers/42/backups": { status: 202, body: { runId: "r-2", customer: "42", pipeline: "backup", state: "queued", runUrl: "", eventsUrl: "" } },
    });
    const user = userEvent.setup();
    renderAs("admin", <BackupsTab customerId="42" version={0} onRunStarted={() => {}} />);
    await user.click(await screen.findByRole("button", { name: "New backup" }));
    await user.click(screen.getByRole("button", { name: "Start backup" }));
    await waitFor(() => expect(calls.find((c) => c.method === "POST")?.body).toEqual({ type: "fast" }));
  });

  it("deletes after confirmation, and refuses a pinned backup with its reason", async () => {
    let deleted = false;
    const calls = mockApi({
      "GET /api/customers/42/backups": () => ({
        body: { ...history, backups: deleted ? history.backups.slice(1) : history.backups },
      }),
      "DELETE /api/customers/42/backups/20261126-101500": () => {
        deleted = true;
        return { status: 204 };
      },
    });
    const user = userEvent.setup();
    renderAs("operator", <BackupsTab customerId="42" version={0} onRunStarted={() => {}} />);

    const pinned = (await screen.findByRole("button", { name: "Delete 20261125-020000" })) as HTMLButtonElement;
    expect(pinned.disabled).toBe(true);
    expect(pinned.title).toBe("pinned: pre-upgrade to v1.1.0");
    expect(screen.getByText("pinned: pre-upgrade to v1.1.0")).toBeTruthy();

    await user.click(screen.getByRole("button", { name: "Delete 20261126-101500" }));
    // Nothing is deleted before the confirmation.
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    const dialog = screen.getByRole("dialog");
    await user.click(within(dialog).getByRole("button", { name: "Delete backup" }));
    await waitFor(() => expect(screen.queryByRole("button", { name: "Delete 20261126-101500" })).toBeNull());
    expect(calls.filter((c) => c.method === "DELETE")).toHaveLength(1);
  });

  it("shows the host's 409 when a delete is refused", async () => {
    mockApi({
      "GET /api/customers/42/backups": { body: history },
      "DELETE /api/customers/42/backups/20261126-101500": {
        status: 409,
        body: { detail: "customer 42 has an active run; try again when it ends" },
      },
    });
    const user = userEvent.setup();
    renderAs("operator", <BackupsTab customerId="42" version={0} onRunStarted={() => {}} />);
    await user.click(await screen.findByRole("button", { name: "Delete 20261126-101500" }));
    await user.click(screen.getByRole("button", { name: "Delete backup" }));
    expect((await screen.findByRole("alert")).textContent).toContain("has an active run");
  });

  it("downloads through a signed link", async () => {
    const calls = mockApi({
      "GET /api/customers/42/backups": { body: history },
      "GET /api/customers/42/backups/20261126-101500": {
        body: { id: "20261126-101500", size: 30, artifacts: [{ file: "db.dump", size: 10, sha256: "x" }, { file: "uploads.tar.gz", size: 20, sha256: "y" }] },
      },
      "POST /api/customers/42/backups/20261126-101500/download-url": {
        body: { url: "/download/42/20261126-101500?file=db.dump&exp=1&kid=k0&sig=s", expiresAt: "2099-01-01T00:00:00Z" },
      },
    });
    const assign = vi.fn();
    vi.stubGlobal("location", { ...window.location, assign, origin: window.location.origin });
    const user = userEvent.setup();
    renderAs("operator", <BackupsTab customerId="42" version={0} onRunStarted={() => {}} />);
    await user.click(await screen.findByRole("button", { name: "Download 20261126-101500" }));
    expect(await screen.findByRole("button", { name: "Download uploads.tar.gz" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Download whole backup" })).toBeTruthy();
    await user.click(screen.getByRole("button", { name: "Download db.dump" }));
    await waitFor(() => expect(assign).toHaveBeenCalledWith("/download/42/20261126-101500?file=db.dump&exp=1&kid=k0&sig=s"));
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ file: "db.dump" });
  });
});
