import { configDefaults, defineConfig } from "vitest/config";

/**
 * Files whose assertions hold the product to a time or a rate measured on the 2 shared cores
 * (a failover within 10 s, playback at 4× within 5 %, a step-down without a freeze over 2 s,
 * lip sync within 100 ms). They run one at a time after the rest, so what they measure is the
 * product under its own load, not under another test file's browsers and gateways (these files
 * met such bounds alone and failed them, now and then, beside a three-node cluster).
 */
const TIMED = [
  "test/e2e/cluster-netns.test.ts",
  "test/e2e/codecs-chromium.test.ts",
  "test/e2e/playback-chromium.test.ts",
  "test/e2e/playback-reverse-chromium.test.ts",
  "test/e2e/streams-netem.test.ts",
  "test/integration/cluster-forward-failover.test.ts",
];

// Integration and end-to-end tests start real peers (GStreamer, Chromium, coturn, sipp);
// they run in forked processes so a crash in one file cannot take the others down.
export default defineConfig({
  test: {
    // Every real peer must be installed before anything runs: no test fails or skips for want of one.
    // Nothing a test runs may look up a name or reach an address off this host: see test/guard/.
    globalSetup: ["test/peers/global-setup.ts", "test/guard/global-setup.ts"],
    setupFiles: ["test/guard/setup.ts"],
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ["default"],
    projects: [
      { extends: true, test: { name: "suite", include: ["test/**/*.test.ts"], exclude: [...configDefaults.exclude, ...TIMED], maxWorkers: 2 } },
      { extends: true, test: { name: "timed", include: TIMED, maxWorkers: 1, sequence: { groupOrder: 1 } } },
    ],
  },
});
