// The console in a real browser against a real `qodify-host serve`, a real customer shop (PM2
// apps, PostgreSQL) and a big customer: every flow of issue 12, in order, as ops would do it.
// Started by tests/tests/console_pg.rs, which makes the shop, the tokens and the server.
import { readFileSync } from "node:fs";
import { expect, test, type Locator, type Page } from "@playwright/test";
import { accessible, api, env, sha256, shoot, signIn, tableChecksums, watchConsole } from "./support";

test.describe.configure({ mode: "serial" });

const OPERATOR = "ops-anna";
const VIEWER = "support-veli";
const ADMIN = "admin-deniz";

let page: Page;
let consoleWatch: { check: () => void };

test.beforeAll(async ({ browser }) => {
  // A context of our own, so axe can open its helper frames in it.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  consoleWatch = watchConsole(page);
});

test.afterAll(async () => {
  await page.context().close();
});

test.afterEach(() => consoleWatch.check());

async function backups(id: string): Promise<any[]> {
  const { status, json } = await api(env.service, "GET", `/api/customers/${id}/backups`);
  expect(status).toBe(200);
  return json.backups;
}

async function openCustomer(domain: string, tab: "Backups" | "Upgrades" | "Restore") {
  await page.getByRole("navigation").getByRole("link", { name: "Customers" }).click();
  await page.getByLabel("Filter customers").fill(domain);
  await page.getByRole("link", { name: domain, exact: true }).click();
  await expect(page.getByRole("heading", { level: 1, name: domain, exact: true })).toBeVisible();
  await page.getByRole("tab", { name: tab }).click();
  await expect(page.getByRole("tab", { name: tab })).toHaveAttribute("aria-selected", "true");
}

/**
 * Signs out through the header. The console shows its sign-in screen at once and ends the
 * session in the background, so this waits for the host's answer too.
 */
async function signOut() {
  await Promise.all([
    page.waitForResponse(
      (r) => r.request().method() === "DELETE" && new URL(r.url()).pathname === "/api/session",
    ),
    page.getByRole("button", { name: "Sign out" }).click(),
  ]);
  await expect(page.getByRole("button", { name: "Sign in" })).toBeVisible();
}

/** The backup history's line of backup `id` (Customer › Backups). */
function historyRow(id: string) {
  return page.getByRole("region", { name: "Backup history" }).getByRole("row").filter({ hasText: id });
}

/** The live run panel's link to run `runId`: there while the panel follows that run. */
function runLink(runId: string) {
  return page.getByRole("region", { name: "Live run" }).locator(`a[href="#/runs/${runId}"]`);
}

/** The POSTs that start a run: a backup, a verify, a restore, an upgrade. */
const RUN_STARTS = /^\/api\/customers\/[^/]+\/(backups|backups\/[^/]+\/verify|restores|upgrades)$/;

/** Does `action`, which starts a run, and returns the new run's id from the host's 202. */
async function startsRun(action: () => Promise<unknown>): Promise<string> {
  const [response] = await Promise.all([
    page.waitForResponse(
      (r) => r.request().method() === "POST" && RUN_STARTS.test(new URL(r.url()).pathname),
    ),
    action(),
  ]);
  expect(response.status(), await response.text()).toBe(202);
  return (await response.json()).runId;
}

/**
 * Waits for the live run panel to follow run `runId` and end with `outcome`. The panel keeps the
 * previous run's outcome until the new run is there, so it is matched by the run's own link
 * (`#/runs/<id>`: the text shows only 8 characters of the id, which UUIDv7s share for a minute).
 */
async function runEnds(runId: string, outcome: "Completed" | "Failed" | "Cancelled", timeout = 180_000) {
  const live = page.getByRole("region", { name: "Live run" });
  await expect(runLink(runId)).toBeVisible();
  await expect(live.getByRole("status").getByText(outcome, { exact: true })).toBeVisible({ timeout });
  return live;
}

test("sign in with a named token", async () => {
  await page.goto("/");
  await expect(page.getByRole("button", { name: "Sign in" })).toBeVisible();
  await shoot(page, "sign-in");
  // A wrong token is refused with a message, and nothing is stored in the page's storage.
  await page.getByLabel("Token", { exact: true }).fill("qdf_not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toBeVisible();
  await signIn(page, env.operator, OPERATOR);
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  expect(stored).not.toContain(env.operator);
  expect(page.url()).not.toContain(env.operator);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "qodify_session");
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe("Strict");
});

test("register a customer", async () => {
  await page.getByRole("navigation").getByRole("link", { name: "Customers" }).click();
  await page.getByRole("button", { name: "Register customer" }).click();
  const dialog = page.getByRole("dialog", { name: "Register customer" });
  await dialog.getByLabel("Customer id", { exact: true }).fill(env.shopId);
  await dialog.getByLabel("Domain", { exact: true }).fill(env.shopDomain);
  await dialog.getByLabel("Tier", { exact: true }).fill(env.shopTier);
  await dialog.getByRole("button", { name: "Register", exact: true }).click();
  await expect(dialog).toBeHidden();
  await page.getByLabel("Filter customers").fill(env.shopDomain);
  await expect(page.getByRole("link", { name: env.shopDomain, exact: true })).toBeVisible();
  const { json } = await api(env.service, "GET", `/api/customers/${env.shopId}`);
  expect(json.domain).toBe(env.shopDomain);
  await page.getByLabel("Filter customers").fill("");
  await expect(page.getByRole("link", { name: env.bigDomain, exact: true })).toBeVisible();
  await shoot(page, "customers");
});

let fastId = "";

test("a fast backup shows live progress and lands in the history", async () => {
  await openCustomer(env.shopDomain, "Backups");
  await page.getByRole("button", { name: "New backup" }).click();
  const dialog = page.getByRole("dialog", { name: "New backup" });
  await expect(dialog.getByRole("radio", { name: "Fast (recommended)" })).toBeChecked();
  await expect(dialog.getByRole("radio", { name: "Custom" })).not.toBeChecked();
  await shoot(page, "new-backup");
  const runId = await startsRun(() => dialog.getByRole("button", { name: "Start backup" }).click());
  await expect(dialog).toBeHidden();
  const live = page.getByRole("region", { name: "Live run" });
  await expect(live.getByRole("progressbar")).toBeVisible();
  await runEnds(runId, "Completed");
  await expect(live.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100");
  const [newest] = await backups(env.shopId);
  expect(newest.result).toBe("succeeded");
  expect(newest.triggeredBy).toBe(OPERATOR);
  fastId = newest.backupId;
  const row = historyRow(fastId);
  await expect(row).toBeVisible();
  // Size and duration are shown for people (columns Date, Type, Size, Duration, Result, Triggered by).
  const cells = row.getByRole("cell");
  await expect(cells.nth(1)).toHaveText("fast");
  await expect(cells.nth(2)).toHaveText(/^\d+(\.\d+)? (B|KB|MB|GB)$/);
  await expect(cells.nth(3)).toHaveText(/^\d+(\.\d+)? (ms|s|m|h)\b/);
  await expect(cells.nth(4)).toHaveText(/succeeded/);
  await expect(cells.nth(5)).toHaveText(OPERATOR);
  await shoot(page, "backups");
});

test("Download gives the file the manifest describes", async () => {
  const { json: backup } = await api(env.service, "GET", `/api/customers/${env.shopId}/backups/${fastId}`);
  const artifact = backup.artifacts[0];
  await page.getByRole("button", { name: `Download ${fastId}`, exact: true }).click();
  const dialog = page.getByRole("dialog", { name: `Download ${fastId}`, exact: true });
  await expect(dialog.getByRole("button", { name: "Download whole backup" })).toBeVisible();
  await shoot(page, "download");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    dialog.getByRole("button", { name: `Download ${artifact.file}`, exact: true }).click(),
  ]);
  const path = await download.path();
  expect(sha256(readFileSync(path))).toBe(artifact.sha256);
  if (await dialog.isVisible()) await page.keyboard.press("Escape");
  await expect(dialog).toBeHidden();
});

let customId = "";

test("a custom backup with logs", async () => {
  await page.getByRole("button", { name: "New backup" }).click();
  const dialog = page.getByRole("dialog", { name: "New backup" });
  await dialog.getByRole("radio", { name: "Custom" }).check();
  for (const on of ["Database", "Uploads", ".env + PM2"]) {
    await expect(dialog.getByRole("checkbox", { name: on })).toBeChecked();
  }
  for (const off of ["Logs", "Artifacts"]) {
    await expect(dialog.getByRole("checkbox", { name: off })).not.toBeChecked();
  }
  await dialog.getByRole("checkbox", { name: "Logs" }).check();
  const runId = await startsRun(() => dialog.getByRole("button", { name: "Start backup" }).click());
  await runEnds(runId, "Completed");
  const [newest] = await backups(env.shopId);
  expect(newest.type).toBe("custom");
  customId = newest.backupId;
  const { json } = await api(env.service, "GET", `/api/customers/${env.shopId}/backups/${customId}`);
  expect(json.include.logs).toBe(true);
  const row = historyRow(customId);
  await expect(row.getByRole("cell").nth(1)).toHaveText("custom");
});

test("Verify runs and stamps the backup", async () => {
  const verify = page.getByRole("button", { name: `Verify ${fastId}`, exact: true });
  const runId = await startsRun(() => verify.click());
  await runEnds(runId, "Completed");
  const { json } = await api(env.service, "GET", `/api/customers/${env.shopId}/backups/${fastId}`);
  expect(json.verifiedAt).toBeTruthy();
});

test("Delete asks first, then the backup is gone", async () => {
  await page.getByRole("button", { name: `Delete ${customId}`, exact: true }).click();
  const dialog = page.getByRole("dialog", { name: `Delete backup ${customId}`, exact: true });
  await expect(dialog).toContainText("It cannot be undone.");
  await accessible(page, "delete confirmation");
  // "Keep it" leaves the backup alone.
  await dialog.getByRole("button", { name: "Keep it" }).click();
  await expect(dialog).toBeHidden();
  const kept = await api(env.service, "GET", `/api/customers/${env.shopId}/backups/${customId}`);
  expect(kept.status).toBe(200);
  await page.getByRole("button", { name: `Delete ${customId}`, exact: true }).click();
  await dialog.getByRole("button", { name: "Delete backup", exact: true }).click();
  await expect(dialog).toBeHidden();
  // The history keeps the line, marked deleted, with nothing left to do on it.
  const row = historyRow(customId);
  await expect(row.getByRole("cell").nth(4)).toContainText("deleted");
  for (const action of ["Download", "Verify", "Delete"]) {
    await expect(page.getByRole("button", { name: `${action} ${customId}`, exact: true })).toHaveCount(0);
  }
  const { status } = await api(env.service, "GET", `/api/customers/${env.shopId}/backups/${customId}`);
  expect(status).toBe(404);
});

test("a restore asks for the domain to be typed", async () => {
  await page.getByRole("tab", { name: "Restore" }).click();
  await expect(page.getByRole("heading", { level: 2, name: "Restore" })).toBeVisible();
  await page.getByLabel("Backup", { exact: true }).selectOption(fastId);
  const restore = page.getByRole("button", { name: "Restore", exact: true });
  await expect(restore).toBeDisabled();
  await page.getByLabel("Type the domain to confirm", { exact: true }).fill("not-the-domain.test");
  await expect(restore).toBeDisabled();
  await page.getByLabel("Type the domain to confirm", { exact: true }).fill(env.shopDomain);
  await expect(restore).toBeEnabled();
  // Into another database, to compare it with the shop's own, table by table.
  await page.getByLabel("Target database", { exact: true }).fill(env.restoreDb);
  await shoot(page, "restore");
  const source = tableChecksums(env.shopDb);
  expect(source).toContain("items=");
  expect(tableChecksums(env.restoreDb)).toBe("");
  const runId = await startsRun(() => restore.click());
  await expect(page.getByText("Restore started: follow it in the live run panel above.")).toBeVisible();
  await runEnds(runId, "Completed");
  const { json } = await api(env.service, "GET", `/api/runs?customer=${env.shopId}&limit=1`);
  expect(json.runs[0].pipeline).toBe("restore");
  expect(json.runs[0].state).toBe("succeeded");
  expect(tableChecksums(env.restoreDb)).toBe(source);
});

test("Cancel stops a running backup of the big customer", async () => {
  await openCustomer(env.bigDomain, "Backups");
  await page.getByRole("button", { name: "New backup" }).click();
  const dialog = page.getByRole("dialog", { name: "New backup" });
  await expect(dialog.getByRole("radio", { name: "Fast (recommended)" })).toBeChecked();
  const runId = await startsRun(() => dialog.getByRole("button", { name: "Start backup" }).click());
  const live = page.getByRole("region", { name: "Live run" });
  await expect(runLink(runId)).toBeVisible();
  // Running, on a named step ("Step: —" until the first one).
  await expect(live.getByText(/^Step: (?!—)/)).toBeVisible();
  await shoot(page, "live-run");
  await live.getByRole("button", { name: "Cancel run" }).click();
  await runEnds(runId, "Cancelled");
  const { json } = await api(env.service, "GET", `/api/runs?customer=${env.bigId}&limit=1`);
  expect(json.runs[0].state).toBe("cancelled");
  expect((await backups(env.bigId)).filter((b) => b.result === "succeeded")).toEqual([]);
});

test("an upgrade with a changed .env key waits for approval, then completes", async () => {
  await openCustomer(env.shopDomain, "Upgrades");
  // v1.2.0 upgrades only from v1.1.0: offered, but not allowed, with the reason.
  await expect(page.getByRole("radio", { name: "v1.2.0" })).toBeDisabled();
  await expect(page.getByRole("radio", { name: "v1.2.0" })).toHaveAccessibleDescription(
    /^not allowed: .*v1\.1\.0/,
  );
  await page.getByRole("radio", { name: "v1.1.0" }).check();
  await page.getByLabel("Heap (MB)", { exact: true }).fill("512");
  await shoot(page, "upgrades");
  const runId = await startsRun(() => page.getByRole("button", { name: "Start upgrade" }).click());
  const live = page.getByRole("region", { name: "Live run" });
  await expect(runLink(runId)).toBeVisible();
  await expect(page.getByRole("list", { name: "Steps" })).toBeVisible();
  const approval = live.getByRole("region", { name: "Approval needed" });
  await expect(approval).toBeVisible({ timeout: 180_000 });
  await expect(approval).toContainText("APP_NAME");
  await expect(approval).not.toContainText("renamed-shop");
  await shoot(page, "approval");
  await approval.getByRole("button", { name: "Approve" }).click();
  await expect(page.getByText("Upgraded to v1.1.0", { exact: true })).toBeVisible({ timeout: 180_000 });
  await expect(live.getByRole("status").getByText("Completed", { exact: true })).toBeVisible();
  const { json } = await api(env.service, "GET", `/api/runs?customer=${env.shopId}&limit=1`);
  expect(json.runs[0].pipeline).toBe("upgrade");
  expect(json.runs[0].state).toBe("succeeded");
});

test("a pinned pre-upgrade backup cannot be deleted", async () => {
  const pinned = (await backups(env.shopId)).find((b) => b.pinned);
  expect(pinned, "the upgrade's pre-upgrade backup is pinned").toBeTruthy();
  await page.getByRole("tab", { name: "Backups" }).click();
  const del = page.getByRole("button", { name: `Delete ${pinned.backupId}`, exact: true });
  await expect(del).toBeDisabled();
  // The reason is shown next to the button (and is its description).
  await expect(del).toHaveAccessibleDescription(/^pinned: /);
  await expect(historyRow(pinned.backupId)).toContainText(/pinned: /);
  const { status } = await api(env.operator, "DELETE", `/api/customers/${env.shopId}/backups/${pinned.backupId}`);
  expect(status).toBe(409);
});

test("a rejected approval rolls the upgrade back", async () => {
  await page.getByRole("tab", { name: "Upgrades" }).click();
  // Now on v1.1.0, v1.2.0 is allowed.
  await expect(page.getByRole("radio", { name: "v1.2.0" })).toBeEnabled();
  await page.getByRole("radio", { name: "v1.2.0" }).check();
  const runId = await startsRun(() => page.getByRole("button", { name: "Start upgrade" }).click());
  const live = page.getByRole("region", { name: "Live run" });
  await expect(runLink(runId)).toBeVisible();
  const approval = live.getByRole("region", { name: "Approval needed" });
  await expect(approval).toBeVisible({ timeout: 180_000 });
  await approval.getByRole("button", { name: "Reject" }).click();
  await expect(page.getByText("Rolled back", { exact: true })).toBeVisible({ timeout: 180_000 });
  await expect(live.getByRole("status").getByText("Failed", { exact: true })).toBeVisible();
  const { json } = await api(env.service, "GET", `/api/runs?customer=${env.shopId}&limit=1`);
  expect(json.runs[0].state).toBe("failed");
});

/**
 * Presses Tab (at most `max` times) until `target` has the focus: what a person without a mouse
 * does to reach it.
 */
async function tabTo(target: Locator, max = 80) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    // `count` does not wait, so a target not there yet costs one Tab, not a timeout.
    if ((await target.count()) === 1 && (await target.evaluate((el) => el === document.activeElement))) {
      return;
    }
  }
  throw new Error(`${target} cannot be reached with Tab`);
}

test("a backup by keyboard alone", async () => {
  await page.goto("/#/customers");
  await expect(page.getByRole("heading", { level: 1, name: "Customers" })).toBeVisible();
  await tabTo(page.getByLabel("Filter customers", { exact: true }));
  await page.keyboard.type(env.shopDomain);
  await tabTo(page.getByRole("link", { name: env.shopDomain, exact: true }));
  await page.keyboard.press("Enter");
  await expect(page.getByRole("heading", { level: 1, name: env.shopDomain, exact: true })).toBeVisible();
  await tabTo(page.getByRole("tab", { name: "Backups", exact: true }));
  await page.keyboard.press("Enter");
  await expect(page.getByRole("tab", { name: "Backups" })).toHaveAttribute("aria-selected", "true");
  await tabTo(page.getByRole("button", { name: "New backup", exact: true }));
  await page.keyboard.press("Enter");
  const dialog = page.getByRole("dialog", { name: "New backup" });
  await expect(dialog).toBeVisible();
  // The dialog holds the focus: Escape closes it and gives the focus back.
  await page.keyboard.press("Escape");
  await expect(dialog).toBeHidden();
  await expect(page.getByRole("button", { name: "New backup" })).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(dialog).toBeVisible();
  await tabTo(dialog.getByRole("button", { name: "Start backup", exact: true }));
  const runId = await startsRun(() => page.keyboard.press("Enter"));
  await runEnds(runId, "Completed");
});

test("Runs and a run's page; the audit log with filters", async () => {
  await page.getByRole("navigation").getByRole("link", { name: "Runs" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Runs" })).toBeVisible();
  await expect(page.getByRole("row").filter({ hasText: "upgrade" }).first()).toBeVisible();
  await shoot(page, "runs");
  const { json } = await api(env.service, "GET", `/api/runs?customer=${env.shopId}&limit=1`);
  const runId: string = json.runs[0].id;
  // The link shows 8 characters of the id; its name is the whole id.
  const runs = page.getByRole("region", { name: "Runs table" });
  await runs.getByRole("link", { name: `Run ${runId}`, exact: true }).click();
  await expect(page.getByRole("heading", { level: 1, name: `Run ${runId}` })).toBeVisible();
  await expect(page.getByRole("heading", { level: 2, name: "Events" })).toBeVisible();
  await shoot(page, "run");

  await page.getByRole("navigation").getByRole("link", { name: "Audit log" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Audit log" })).toBeVisible();
  // The filters apply on "Apply filters", then every line is the actor's.
  await page.getByLabel("Actor", { exact: true }).fill(OPERATOR);
  await page.getByRole("button", { name: "Apply filters" }).click();
  const lines = page
    .getByRole("region", { name: "Audit table" })
    .getByRole("row")
    .filter({ has: page.getByRole("cell") });
  await expect(lines.filter({ hasText: OPERATOR }).first()).toBeVisible();
  await expect(lines.filter({ hasNotText: OPERATOR })).toHaveCount(0);
  await shoot(page, "audit");
});

test("a mutation without the CSRF header, or with a forged one, is refused", async () => {
  const url = `/api/customers/${env.shopId}/backups`;
  const missing = await page.request.post(url, { data: {} });
  expect(missing.status()).toBe(403);
  const forged = await page.request.post(url, { data: {}, headers: { "X-CSRF-Token": "forged" } });
  expect(forged.status()).toBe(403);
});

test("sign-out ends the session", async () => {
  await signOut();
  await expect(page.getByRole("status")).toHaveText("You are signed out.");
  const after = await page.request.get("/api/session");
  expect(after.status()).toBe(401);
});

test("a viewer sees no mutating buttons and the API refuses its token", async () => {
  await signIn(page, env.viewer, VIEWER);
  await openCustomer(env.shopDomain, "Backups");
  await expect(page.getByRole("row").filter({ hasText: fastId })).toBeVisible();
  await expect(page.getByRole("button", { name: "New backup" })).toHaveCount(0);
  await expect(page.getByRole("button", { name: /^(Delete|Verify|Download) / })).toHaveCount(0);
  await page.getByRole("tab", { name: "Upgrades" }).click();
  await expect(page.getByRole("heading", { level: 2, name: "Upgrades" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Start upgrade" })).toHaveCount(0);
  await page.getByRole("tab", { name: "Restore" }).click();
  await expect(page.getByText("Restores are started by operators and admins.")).toBeVisible();
  await expect(page.getByRole("button", { name: "Restore", exact: true })).toHaveCount(0);
  await page.getByRole("navigation").getByRole("link", { name: "Customers" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Customers" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Register customer" })).toHaveCount(0);
  await expect(page.getByRole("navigation").getByRole("link", { name: "Tokens" })).toHaveCount(0);
  const refused = await api(env.viewer, "POST", `/api/customers/${env.shopId}/backups`, {});
  expect(refused.status).toBe(403);
  const del = await api(env.viewer, "DELETE", `/api/customers/${env.shopId}/backups/${fastId}`);
  expect(del.status).toBe(403);
  await signOut();
});

test("an admin makes and revokes a token", async () => {
  await signIn(page, env.admin, ADMIN);
  await page.getByRole("navigation").getByRole("link", { name: "Tokens" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Tokens" })).toBeVisible();
  await page.getByLabel("Name", { exact: true }).fill("e2e-temp");
  await page.getByLabel("Role", { exact: true }).selectOption("viewer");
  await page.getByRole("button", { name: "Create token" }).click();
  await expect(page.getByRole("heading", { name: "Token created for e2e-temp (viewer)" })).toBeVisible();
  const shown = page.getByLabel("New token", { exact: true });
  await expect(shown).toHaveValue(/^qdf_/);
  const token = await shown.inputValue();
  expect((await api(token, "GET", "/api/customers")).status).toBe(200);
  await shoot(page, "tokens");
  // Revoke asks first: "Keep it" keeps the token working.
  const revoke = page.getByRole("button", { name: "Revoke e2e-temp", exact: true });
  const confirm = page.getByRole("dialog", { name: "Revoke token e2e-temp", exact: true });
  await revoke.click();
  await expect(confirm).toContainText("stops working at once");
  await accessible(page, "revoke confirmation");
  await confirm.getByRole("button", { name: "Keep it" }).click();
  await expect(confirm).toBeHidden();
  expect((await api(token, "GET", "/api/customers")).status).toBe(200);
  // Confirmed, it goes, and the new token's box with it.
  await revoke.click();
  await confirm.getByRole("button", { name: "Revoke token", exact: true }).click();
  await expect(confirm).toBeHidden();
  await expect(revoke).toHaveCount(0);
  await expect(shown).toHaveCount(0);
  expect((await api(token, "GET", "/api/customers")).status).toBe(401);
  // Operators cannot manage tokens.
  expect((await api(env.operator, "GET", "/api/tokens")).status).toBe(403);
});
