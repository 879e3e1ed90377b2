// Playwright for the console's end-to-end tests: Debian's Chromium (no downloaded browser), one
// worker (the flows share one serve and one customer), traces kept for failures.
import { defineConfig } from "@playwright/test";

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

export default defineConfig({
  testDir: ".",
  testMatch: /.*\.spec\.ts/,
  fullyParallel: false,
  workers: 1,
  retries: 0,
  timeout: 240_000,
  expect: { timeout: 30_000 },
  reporter: [["list"]],
  outputDir: process.env.QODIFY_E2E_OUT ?? "test-results",
  use: {
    baseURL: process.env.QODIFY_BASE,
    headless: true,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    acceptDownloads: true,
    launchOptions: {
      executablePath,
      // The CI container runs as root, where Chromium's own sandbox cannot start.
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    },
  },
});
