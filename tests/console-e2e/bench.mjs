// The console's render benchmark, run by `cargo xtask bench --console-only` (xtask/src/
// bench_console.rs), which makes the server and its data. For each page: load it SAMPLES times in
// headless Chromium and take the time from navigation start to the first frame in which its table
// has all the rows the page shows; the baseline, in the same browser, fetches the same API answer
// and draws it as a plain DOM table. Prints one JSON object on stdout.
//
// The console routes by the URL's hash (`/#/customers`, `/#/customers/<id>/backups`), so every
// sample first leaves for `about:blank`: going from one hash to another of the same document is
// no page load at all. Its tables are the `<table>` inside `<main>` (Customers: one row per
// customer, at most the console's first page of 100; Customer › Backups: one row per history line).
import { chromium } from "@playwright/test";

const base = process.env.QODIFY_BASE;
const token = process.env.QODIFY_TOKEN;
const samples = Number(process.env.SAMPLES ?? 20);
const historyId = process.env.HISTORY_ID ?? "history";

const pages = [
  {
    name: `Customers (${process.env.CUSTOMERS} customers)`,
    path: process.env.CUSTOMERS_PATH ?? "/#/customers",
    api: "/api/customers?limit=1000",
    list: "customers",
  },
  {
    name: `Customer › Backups (${process.env.BACKUPS} backups)`,
    path: process.env.HISTORY_PATH ?? `/#/customers/${encodeURIComponent(historyId)}/backups`,
    api: `/api/customers/${historyId}/backups?limit=1000`,
    list: "backups",
  },
];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 800 } });
const signIn = await context.request.post("/api/session", { data: { token } });
if (!signIn.ok()) throw new Error(`sign-in: ${signIn.status()} ${await signIn.text()}`);
const page = await context.newPage();
// The session cookie alone is not enough: a console that never signed in in this browser shows
// its sign-in screen without asking the host, unless it finds its "signed in before" flag (the
// console's own localStorage key, never the token). Set it once on the origin.
await page.goto("/healthz");
await page.evaluate(() => localStorage.setItem("qodify-console.signed-in", "1"));
const out = { pages: [] };
const rowsSelector = "main table tbody tr";

for (const p of pages) {
  // How many rows the page shows: as many as its first API answer, i.e. its table once loaded.
  await page.goto("about:blank");
  await page.goto(p.path);
  await page.waitForSelector(rowsSelector, { timeout: 60_000 });
  // The console's Socket.IO client may hold a long-poll open until it upgrades to a WebSocket;
  // the table is drawn from one answer in one commit either way, so a late idle is no error.
  await page.waitForLoadState("networkidle", { timeout: 15_000 }).catch(() => {});
  const rows = await page.locator(rowsSelector).count();
  const times = [];
  for (let i = 0; i < samples; i++) {
    // A real load each time (not a hash change within the document already there).
    await page.goto("about:blank");
    await page.goto(p.path);
    const t = await page.waitForFunction(
      ({ sel, n }) => document.querySelectorAll(sel).length >= n && performance.now(),
      { sel: rowsSelector, n: rows },
      { polling: "raf", timeout: 60_000 },
    );
    times.push(await t.jsonValue());
  }
  // The baseline: the same answer, fetched and drawn by a plain script on a page of the origin.
  const baseline = [];
  for (let i = 0; i < samples; i++) {
    await page.goto("/healthz");
    baseline.push(
      await page.evaluate(
        async ({ api, list, rows }) => {
          const t0 = performance.now();
          const res = await fetch(api, { credentials: "same-origin" });
          const items = (await res.json())[list].slice(0, rows);
          const table = document.createElement("table");
          const body = table.createTBody();
          for (const item of items) {
            const tr = body.insertRow();
            for (const v of Object.values(item)) {
              tr.insertCell().textContent = typeof v === "object" ? JSON.stringify(v) : String(v);
            }
          }
          document.body.append(table);
          await new Promise((r) => requestAnimationFrame(() => r()));
          return performance.now() - t0 + (performance.timing.responseEnd - performance.timing.navigationStart);
        },
        { api: p.api, list: p.list, rows },
      ),
    );
  }
  out.pages.push({
    name: p.name,
    rows,
    medianMs: median(times),
    worstMs: Math.max(...times),
    baselineMedianMs: median(baseline),
  });
}
await browser.close();
console.log(JSON.stringify(out));
