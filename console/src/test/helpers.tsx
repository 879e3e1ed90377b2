/** Test helpers: a fake API behind `fetch`, a signed-in render, and a fake live source. */
import { render } from "@testing-library/react";
import type { ReactElement } from "react";
import { vi } from "vitest";
import type { Role } from "../api/client";
import { LiveContext, SessionContext, sessionValue } from "../lib/context";
import type { LiveSource, Watcher } from "../lib/live";
import type { LiveEvent } from "../lib/liveRun";

export interface Recorded {
  method: string;
  path: string;
  search: string;
  headers: Headers;
  body: unknown;
}

type Answer = { status?: number; body?: unknown } | ((req: Recorded) => { status?: number; body?: unknown });

/**
 * Replaces `fetch` with a fake host: `routes` maps "METHOD /path" to an answer; anything else
 * is a 404 problem. Returns every request made, bodies parsed.
 */
export function mockApi(routes: Record<string, Answer>): Recorded[] {
  const calls: Recorded[] = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (input: Request) => {
      const url = new URL(input.url);
      const text = input.method === "GET" ? "" : await input.text();
      const req: Recorded = {
        method: input.method,
        path: url.pathname,
        search: url.search,
        headers: input.headers,
        body: text ? JSON.parse(text) : undefined,
      };
      calls.push(req);
      const route = routes[`${req.method} ${req.path}`];
      const answer = typeof route === "function" ? route(req) : route;
      if (!answer) {
        return problem(404, `no fake route for ${req.method} ${req.path}`);
      }
      const status = answer.status ?? 200;
      if (status === 204) return new Response(null, { status });
      if (status >= 400) return problem(status, String((answer.body as { detail?: string })?.detail ?? ""));
      return new Response(JSON.stringify(answer.body ?? {}), {
        status,
        headers: { "content-type": "application/json" },
      });
    }),
  );
  return calls;
}

function problem(status: number, detail: string): Response {
  return new Response(JSON.stringify({ type: "about:blank", title: "error", status, detail }), {
    status,
    headers: { "content-type": "application/problem+json" },
  });
}

/** A live source whose events the test sends. */
export class FakeLive implements LiveSource {
  runWatchers = new Map<string, Set<Watcher>>();

  watchRun(runId: string, watcher: Watcher) {
    const set = this.runWatchers.get(runId) ?? new Set();
    set.add(watcher);
    this.runWatchers.set(runId, set);
    return () => set.delete(watcher);
  }

  watchCustomer() {
    return () => {};
  }

  onStatus() {
    return () => {};
  }

  emit(runId: string, name: string, data: Record<string, unknown>) {
    const event: LiveEvent = { name, data: { runId, ...data } };
    for (const w of this.runWatchers.get(runId) ?? []) w(event);
  }
}

/** Renders `ui` for a person signed in with `role`. */
export function renderAs(role: Role, ui: ReactElement, live: LiveSource = new FakeLive()) {
  const value = sessionValue({ name: `${role}-1`, role, expiresAt: "2099-01-01T00:00:00Z" }, () => {});
  return render(
    <SessionContext.Provider value={value}>
      <LiveContext.Provider value={live}>{ui}</LiveContext.Provider>
    </SessionContext.Provider>,
  );
}
