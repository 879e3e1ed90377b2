import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { mockApi, renderAs } from "../test/helpers";
import { ApprovalPanel, keyChanges } from "./ApprovalPanel";
import { setCsrfToken } from "../api/client";

const RUN = "0193aaaa-0000-7000-8000-000000000002";

const approval = {
  step: "env-merge",
  summary: "the .env merge for v1.1.0 changes existing settings: backend changes POOL; backend removes SECRET",
  // Values must never show, even where a details map carries them.
  details: {
    kind: "env-merge",
    version: "v1.1.0",
    services: {
      backend: { added: ["NEW_FLAG"], changed: { POOL: "47200" }, removed: ["SECRET"], extra: [] },
      admin: { added: [], changed: [], removed: [] },
    },
  },
  expiresAt: "2099-01-01T00:00:00Z",
};

describe("approval panel", () => {
  it("lists the keys added, changed and removed, with every value masked", () => {
    expect(keyChanges(approval.details)).toEqual([
      { service: "backend", change: "added", key: "NEW_FLAG" },
      { service: "backend", change: "changed", key: "POOL" },
      { service: "backend", change: "removed", key: "SECRET" },
    ]);
    renderAs("operator", <ApprovalPanel runId={RUN} approval={approval} canDecide />);
    const region = screen.getByRole("region", { name: "Approval needed" });
    expect(region.textContent).toContain("NEW_FLAG");
    expect(region.textContent).toContain("POOL");
    expect(region.textContent).not.toContain("47200");
    expect(screen.getAllByText("••••••")).toHaveLength(3);
  });

  it("approves with the CSRF token, and viewers cannot decide", async () => {
    const calls = mockApi({
      [`POST /api/runs/${RUN}/approval`]: { body: { runId: RUN, step: "env-merge", summary: "", approved: true } },
    });
    setCsrfToken("csrf-9");
    const user = userEvent.setup();
    const { unmount } = renderAs("operator", <ApprovalPanel runId={RUN} approval={approval} canDecide />);
    await user.click(screen.getByRole("button", { name: "Approve" }));
    await waitFor(() => expect(screen.getByRole("status").textContent).toContain("Approved"));
    expect(calls[0].body).toEqual({ approve: true });
    expect(calls[0].headers.get("X-CSRF-Token")).toBe("csrf-9");
    setCsrfToken(null);
    unmount();

    renderAs("viewer", <ApprovalPanel runId={RUN} approval={approval} canDecide={false} />);
    expect(screen.queryByRole("button", { name: "Approve" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Reject" })).toBeNull();
  });
});
