import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { mockApi, renderAs } from "../test/helpers";
import { Schedules } from "./Schedules";

const inHours = (h: number) => new Date(Date.now() + h * 3600e3).toISOString();

describe("Schedules", () => {
  it("shows each schedule with its next run and why its last slot was skipped", async () => {
    const calls = mockApi({
      "GET /api/schedules": {
        body: {
          schedules: [
            { customerId: "42", domain: "shop.example.com", pipeline: "backup", origin: "tier:paid", at: "daily 03:00 +03:00", window: "2h", jitter: "30m", catchUp: true, params: {}, nextRunAt: inHours(5.5), due: false, last: { slot: "2026-12-06T00:00:00Z", outcome: "skipped", runId: null, reason: "customer busy: run r1 (restore, running) is active", at: "2026-12-06T00:12:00Z" }, error: null },
            { customerId: "42", domain: "shop.example.com", pipeline: "drill", origin: "customer", at: "off", window: null, jitter: null, catchUp: null, params: {}, nextRunAt: null, due: false, last: null, error: null },
          ],
        },
      },
    });
    renderAs("viewer", <Schedules customerId="42" />);
    const list = await screen.findByRole("list", { name: "Schedules" });
    const [backup, drill] = within(list).getAllByRole("listitem");
    expect(backup.textContent).toContain("backup daily 03:00 +03:00 (tier paid)");
    expect(backup.textContent).toContain("next in 5 h");
    expect(backup.textContent).toContain("last: skipped (customer busy: run r1 (restore, running) is active)");
    expect(drill.textContent).toBe("drill off (its own)");
    expect(calls[0].search).toBe("?customer=42");
  });

  it("shows nothing for a customer with no schedules", async () => {
    const calls = mockApi({ "GET /api/schedules": { body: { schedules: [] } } });
    const { container } = renderAs("viewer", <Schedules customerId="7" />);
    await new Promise((r) => setTimeout(r, 20));
    expect(calls.length).toBe(1);
    expect(container.textContent).toBe("");
  });
});
