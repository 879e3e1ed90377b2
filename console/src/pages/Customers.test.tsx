import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { mockApi, renderAs } from "../test/helpers";
import { Customers } from "./Customers";

const hoursAgo = (h: number) => new Date(Date.now() - h * 3600e3).toISOString();
const list = {
  customers: [
    { id: "42", domain: "shop.example.com", tier: "paid", node: "web-2", layout: "blue-green", release: "v1.0.0", lastBackup: { backupId: "20261126-101500", date: hoursAgo(3), result: "succeeded", size: 524_288_000, runId: "a" }, activeRun: { runId: "r", pipeline: "backup", state: "running", percent: 41.7, step: "archive-uploads" } },
    { id: "43", domain: "stale.example.org", tier: null, node: null, layout: "current", release: null, lastBackup: { backupId: "20261120-020000", date: hoursAgo(30), result: "succeeded", size: 1000, runId: "b" }, activeRun: null },
  ],
};

describe("Customers", () => {
  it("flags an overdue backup, shows an active run's progress, and registers a customer", async () => {
    const calls = mockApi({
      "GET /api/customers": { body: list },
      "PUT /api/customers/77": { body: { id: "77", domain: "new.example.com", tier: null, createdAt: "", updatedAt: "" } },
    });
    const user = userEvent.setup();
    renderAs("operator", <Customers />);
    const stale = (await screen.findByRole("link", { name: "stale.example.org" })).closest("tr")!;
    expect(within(stale).getByText("overdue")).toBeTruthy();
    const fresh = screen.getByRole("link", { name: "shop.example.com" }).closest("tr")!;
    expect(within(fresh).queryByText("overdue")).toBeNull();
    expect(within(fresh).getByText("3 h ago")).toBeTruthy();
    expect(within(fresh).getByRole("progressbar").getAttribute("aria-valuenow")).toBe("41.7");

    await user.click(screen.getByRole("button", { name: "Register customer" }));
    const dialog = screen.getByRole("dialog", { name: "Register customer" });
    await user.type(within(dialog).getByLabelText("Customer id"), "77");
    await user.type(within(dialog).getByLabelText("Domain"), "New.Example.com");
    await user.click(within(dialog).getByRole("button", { name: "Register" }));
    await waitFor(() => expect(calls.some((c) => c.method === "PUT")).toBe(true));
    expect(calls.find((c) => c.method === "PUT")?.body).toEqual({ domain: "new.example.com", tier: null });
  });

  it("asks the host with the filter once typing pauses, and hides Register from viewers", async () => {
    const calls = mockApi({ "GET /api/customers": { body: list } });
    const user = userEvent.setup();
    renderAs("viewer", <Customers />);
    await screen.findByRole("link", { name: "shop.example.com" });
    expect(screen.queryByRole("button", { name: "Register customer" })).toBeNull();
    await user.type(screen.getByLabelText("Filter customers"), "shop");
    await waitFor(() => expect(calls.some((c) => c.search.includes("q=shop"))).toBe(true));
  });

  it("shows the node each customer belongs to, and none yet for a customer no node has claimed", async () => {
    mockApi({ "GET /api/customers": { body: list } });
    renderAs("viewer", <Customers />);
    const shop = (await screen.findByRole("link", { name: "shop.example.com" })).closest("tr")!;
    const headers = screen.getAllByRole("columnheader").map((h) => h.textContent);
    const column = headers.indexOf("Node");
    expect(column).toBeGreaterThan(0);
    expect(within(shop).getAllByRole("cell")[column].textContent).toBe("web-2");
    const stale = screen.getByRole("link", { name: "stale.example.org" }).closest("tr")!;
    expect(within(stale).getAllByRole("cell")[column].textContent).toBe("none yet");
  });
});
