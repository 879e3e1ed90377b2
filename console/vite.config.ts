/**
 * Vite builds the console into `dist/`, which the host embeds at compile time; `npm run dev`
 * serves it with the API of a local `qodify-host serve` behind the same origin.
 */
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

const host = "http://127.0.0.1:8610";

export default defineConfig({
  plugins: [react()],
  build: {
    target: "es2022",
    // Nothing inline (the CSP allows only files from the host): even tiny assets stay files.
    assetsInlineLimit: 0,
  },
  server: {
    proxy: {
      "/api": host,
      "/download": host,
      "/socket.io": { target: host, ws: true },
    },
  },
  test: {
    environment: "happy-dom",
    setupFiles: ["./src/test/setup.ts"],
    css: false,
  },
});
