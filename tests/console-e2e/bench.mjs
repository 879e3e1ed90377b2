// The console's render benchmark, run by `cargo xtask bench --console-only` (xtask/src/
// bench_console.rs), which makes the server and its data. For each page: load it SAMPLES times in
// headless Chromium and take the time from navigation start to the first frame in which its table
// has all the rows the page shows; the baseline, in the same browser, fetches the same API answer
// and draws it as a plain DOM table. Prints one JSON object on stdout.
import { chromium } from "@playwright/test";

const base = process.env.QODIFY_BASE;
const token = process.env.QODIFY_TOKEN;
const samples = Number(process.env.SAMPLES ?? 20);
const historyId = process.env.HISTORY_ID ?? "history";

const pages = [
  {
    name: `Customers (${process.env.CUSTOMERS} customers)`,
    path: process.env.CUSTOMERS_PATH ?? "/customers",
    api: "/api/customers?limit=1000",
    list: "customers",
  },
  {
    name: `Customer › Backups (${process.env.BACKUPS} backups)`,
    path: process.env.HISTORY_PATH ?? `/customers/${historyId}`,
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
const out = { pages: [] };

for (const p of pages) {
  // How many rows the page shows: as many as its first API answer, i.e. its table once loaded.
  await page.goto(p.path);
  await page.waitForSelector("main table tbody tr", { timeout: 60_000 });
  await page.waitForLoadState("networkidle");
  const rows = await page.locator("main table tbody tr").count();
  const times = [];
  for (let i = 0; i < samples; i++) {
    await page.goto(p.path);
    const t = await page.waitForFunction(
      (n) => document.querySelectorAll("main table tbody tr").length >= n && performance.now(),
      rows,
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
