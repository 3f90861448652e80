/**
 * Supervision (gateway/supervision/): restarts with backoff and no restart loops, the last
 * events for administrators, and an optional webhook.
 */
import { z } from "zod";

export const supervisionSection = z
  .strictObject({
    /**
     * Failures tolerated per component within `windowSeconds` (a camera's session lost, a
     * media worker dead); the next one disables it until an administrator enables it or the
     * window has passed. Default 10.
     */
    maxRestarts: z.number().int().min(0).max(1000).default(10),
    /** The sliding window of `maxRestarts`, and how long a disabled component stays disabled, seconds. Default 600. */
    windowSeconds: z.number().int().min(1).max(86_400).default(600),
    /** Delay before restarting a failed media worker, doubled per failure in the window, ms. Default 1000. */
    backoffMinMs: z.number().int().min(0).max(600_000).default(1000),
    /** Cap of that delay, ms. Default 30000. */
    backoffMaxMs: z.number().int().min(0).max(3_600_000).default(30_000),
    /** How often TURN, SIP, the audit store and the identity provider are checked, seconds. Default 15. */
    checkIntervalSeconds: z.number().int().min(1).max(3600).default(15),
    /** Time a health check may take before it counts as failed, ms. Default 5000. */
    checkTimeoutMs: z.number().int().min(100).max(60_000).default(5000),
    /** Events kept for administrators (`/api/admin/supervision`). Default 100. */
    eventsKept: z.number().int().min(10).max(10_000).default(100),
    webhook: z
      .strictObject({
        /** Each event is POSTed here as JSON (from the configuration only; never an address a client gave). */
        url: z.string().url().refine((u) => /^https?:/.test(u), { message: "must be an http(s) URL" }),
        /** Time one delivery may take, ms. Default 5000. */
        timeoutMs: z.number().int().min(100).max(60_000).default(5000),
        /** Events waiting for delivery; beyond it new events are dropped and counted. Default 1000. */
        queueMax: z.number().int().min(1).max(100_000).default(1000),
      })
      .optional(),
  })
  .prefault({});

export type SupervisionConfig = z.infer<typeof supervisionSection>;
