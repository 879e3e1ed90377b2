// What every console flow needs: the test's configuration (from tests/tests/console_pg.rs), a
// bearer-token API client for checks behind the page's back, accessibility and screenshots.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import AxeBuilder from "@axe-core/playwright";
import { expect, type Page } from "@playwright/test";

function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this suite through tests/tests/console_pg.rs`);
  return v;
}

export const env = {
  base: need("QODIFY_BASE"),
  service: need("QODIFY_SERVICE_TOKEN"),
  operator: need("QODIFY_TOKEN_OPERATOR"),
  viewer: need("QODIFY_TOKEN_VIEWER"),
  admin: need("QODIFY_TOKEN_ADMIN"),
  shopId: need("SHOP_ID"),
  shopDomain: need("SHOP_DOMAIN"),
  shopTier: need("SHOP_TIER"),
  shopDb: need("SHOP_DB"),
  restoreDb: need("RESTORE_DB"),
  bigId: need("BIG_ID"),
  bigDomain: need("BIG_DOMAIN"),
  screenshots: process.env.QODIFY_SCREENSHOTS,
};

/** A JSON call to the API with a bearer token; returns the status and the parsed body. */
export async function api(
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: any }> {
  const res = await fetch(env.base + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

/** One value from `psql` as `postgres` on the local server. */
export function psql(db: string, sql: string): string {
  return execFileSync(
    "psql",
    ["-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
    { encoding: "utf8" },
  ).trim();
}

/** Every table of the public schema with its row count and a checksum of its rows. */
export function tableChecksums(db: string): string {
  const tables = psql(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    .split("\n")
    .filter(Boolean);
  return tables
    .map((t) => `${t}=${psql(db, `SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM "${t}" t`)}`)
    .join(" ");
}

export function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** axe finds no serious or critical violation on the page as it is now. */
export async function accessible(page: Page, what: string): Promise<void> {
  const result = await new AxeBuilder({ page }).analyze();
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    `accessibility of ${what}`,
  ).toEqual([]);
}

/**
 * Checks the page at 1280 px and at 390 px (no horizontal overflow of the page itself, axe clean)
 * and, when QODIFY_SCREENSHOTS names a folder, saves `<name>-1280.png` and `<name>-390.png`.
 */
export async function shoot(page: Page, name: string): Promise<void> {
  const original = page.viewportSize() ?? { width: 1280, height: 800 };
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 800 });
    await page.waitForTimeout(100);
    const { overflow, widest } = await page.evaluate(() => {
      const doc = document.documentElement;
      // The outermost elements that reach past the right edge, to say what to fix.
      const past = [...document.querySelectorAll<HTMLElement>("body *")].filter(
        (el) => el.getBoundingClientRect().right > doc.clientWidth + 0.5,
      );
      const outer = past.filter((el) => !past.some((o) => o !== el && o.contains(el)));
      const describe = (el: HTMLElement) =>
        `<${el.tagName.toLowerCase()}${el.className ? ` class="${el.className}"` : ""}> ${Math.round(el.getBoundingClientRect().right)} px: ${(el.textContent ?? "").slice(0, 60)}`;
      return { overflow: doc.scrollWidth - doc.clientWidth, widest: outer.slice(0, 5).map(describe) };
    });
    expect(overflow, `${name} at ${width} px scrolls sideways: ${widest.join("; ")}`).toBeLessThanOrEqual(0);
    await accessible(page, `${name} at ${width} px`);
    if (env.screenshots) {
      mkdirSync(env.screenshots, { recursive: true });
      await page.screenshot({ path: join(env.screenshots, `${name}-${width}.png`), fullPage: false });
    }
  }
  await page.setViewportSize(original);
}

/** Collects console errors and page errors; `check()` fails the test on any. */
export function watchConsole(page: Page): { check: () => void } {
  const errors: string[] = [];
  page.on("console", (msg) => {
    // A refused request (401/403/409 the test provokes on purpose) is logged by Chromium itself.
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) {
      errors.push(msg.text());
    }
  });
  page.on("pageerror", (err) => errors.push(String(err)));
  return { check: () => expect(errors, "errors in the browser console").toEqual([]) };
}

/**
 * Signs in through the page with `token` and waits for the header to say who ("Signed in as
 * <name> (<role>)"). Starts from `/`: signed out, the console shows its sign-in screen there.
 */
export async function signIn(page: Page, token: string, who: string): Promise<void> {
  await page.goto("/");
  await page.getByLabel("Token", { exact: true }).fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByText(new RegExp(`^Signed in as ${who} \\(`))).toBeVisible();
}
