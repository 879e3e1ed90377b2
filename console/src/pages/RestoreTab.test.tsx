import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { mockApi, renderAs } from "../test/helpers";
import { RestoreTab } from "./RestoreTab";

const history = {
  customer: "42",
  backups: [
    { date: "2026-11-26T10:15:00Z", type: "fast", size: 1000, durationMs: 1000, result: "succeeded", triggeredBy: null, runId: "a", backupId: "20261126-101500", pinned: null },
    { date: "2026-11-25T10:15:00Z", type: "fast", size: 1000, durationMs: 1000, result: "deleted", triggeredBy: null, runId: "b", backupId: "20261125-101500", pinned: null, note: "retention" },
    { date: "2026-11-24T10:15:00Z", type: "custom", size: 2000, durationMs: 1000, result: "succeeded", triggeredBy: null, runId: "c", backupId: "20261124-101500", pinned: null },
  ],
};

describe("Restore tab", () => {
  it("restores only once the domain is typed, with the chosen backup and toggles", async () => {
    const calls = mockApi({
      "GET /api/customers/42/backups": { body: history },
      "POST /api/customers/42/restores": { status: 202, body: { runId: "r-9", customer: "42", pipeline: "restore", state: "queued", runUrl: "", eventsUrl: "" } },
    });
    const started = vi.fn();
    const user = userEvent.setup();
    renderAs("operator", <RestoreTab customerId="42" domain="shop.example.com" onRunStarted={started} />);

    const select = (await screen.findByLabelText("Backup")) as HTMLSelectElement;
    // Deleted backups cannot be restored.
    expect([...select.options].map((o) => o.value)).toEqual(["20261126-101500", "20261124-101500"]);
    await user.selectOptions(select, "20261124-101500");
    await user.click(screen.getByLabelText("Uploads"));
    await user.type(screen.getByLabelText("Target database"), "shop_copy");

    const restore = screen.getByRole("button", { name: "Restore" }) as HTMLButtonElement;
    expect(restore.disabled).toBe(true);
    const confirm = screen.getByLabelText("Type the domain to confirm");
    await user.type(confirm, "shop.example.co");
    expect(restore.disabled).toBe(true);
    await user.type(confirm, "m");
    expect(restore.disabled).toBe(false);
    await user.click(restore);

    await waitFor(() => expect(started).toHaveBeenCalledWith("r-9"));
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({
      backup: "20261124-101500",
      include: { db: true, services: true, uploads: false, envPm2: true },
      targetDb: "shop_copy",
    });
  });

  it("offers a viewer no restore at all", async () => {
    mockApi({ "GET /api/customers/42/backups": { body: history } });
    renderAs("viewer", <RestoreTab customerId="42" domain="shop.example.com" onRunStarted={() => {}} />);
    expect(await screen.findByText(/started by operators/)).toBeTruthy();
    expect(screen.queryAllByRole("button")).toHaveLength(0);
  });
});
