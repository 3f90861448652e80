import { defineConfig } from "vitest/config";

// Integration and end-to-end tests start real peers (GStreamer, Chromium, coturn, sipp);
// they run in forked processes so a crash in one file cannot take the others down.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Every real peer must be installed before anything runs: no test fails or skips for want of one.
    // Nothing a test runs may look up a name or reach an address off this host: see test/guard/.
    globalSetup: ["test/peers/global-setup.ts", "test/guard/global-setup.ts"],
    setupFiles: ["test/guard/setup.ts"],
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 30_000,
    fileParallelism: true,
    maxWorkers: 2,
    reporters: ["default"],
  },
});
