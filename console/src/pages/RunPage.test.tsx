import { screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { mockApi, renderAs } from "../test/helpers";
import { RunPage } from "./RunPage";

const RUN = "0193a000-0000-7000-8000-000000000001";
const run = {
  id: RUN, customerId: "42", pipeline: "backup", params: {}, state: "running", createdAt: "2026-11-26T10:00:00Z",
  startedAt: "2026-11-26T10:00:00Z", finishedAt: null, error: null, backupId: null, progress: 0, message: null,
  triggeredBy: "ayse", cancelRequested: false, node: "web-3", eventsUrl: "", preflight: null, warnings: [],
};

/** The value next to the fact named `term`. */
async function fact(term: string) {
  const dt = (await screen.findAllByText(term)).find((e) => e.tagName === "DT");
  return dt?.nextElementSibling?.textContent;
}

describe("RunPage", () => {
  it("shows the node that runs the run", async () => {
    mockApi({ [`GET /api/runs/${RUN}`]: { body: run } });
    renderAs("viewer", <RunPage runId={RUN} />);
    expect(await fact("Node")).toBe("web-3");
  });

  it("says a queued run is not claimed by a node yet", async () => {
    mockApi({ [`GET /api/runs/${RUN}`]: { body: { ...run, state: "queued", startedAt: null, node: null } } });
    renderAs("viewer", <RunPage runId={RUN} />);
    expect(await fact("Node")).toBe("not claimed yet");
  });
});
