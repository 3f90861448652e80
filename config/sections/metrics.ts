/**
 * Operational figures (`/metrics`, `/readyz`). Owned by gateway/http/metrics.ts.
 *
 * Prometheus scrapes with a bearer token (`token`, or $GATEHOUSE_METRICS_TOKEN), or on a
 * listener of its own (`listen`). Security fails closed: a metrics listener on anything but
 * loopback needs a token.
 */
import { z } from "zod";
import { isLoopback } from "../net/special.ts";
import { isIpLiteral } from "../net/ip.ts";

export const metricsSection = z
  .strictObject({
    /**
     * Bearer token a scraper sends (`Authorization: Bearer <token>`), at least 16 characters;
     * `${METRICS_TOKEN}` takes it from the environment. Default: $GATEHOUSE_METRICS_TOKEN, else
     * none (only a signed-in administrator of every camera may read /metrics).
     */
    token: z.string().min(16, "must be at least 16 characters").optional(),
    /**
     * A separate listener serving only /metrics, /healthz and /readyz (plain HTTP), for a
     * monitoring network. Default: none (the front door serves them).
     */
    listen: z
      .strictObject({
        /** Address to bind (an IP literal). Default 127.0.0.1. */
        host: z.string().refine(isIpLiteral, { message: "must be an IPv4 or IPv6 address" }).default("127.0.0.1"),
        /** Port; 0 picks a free port. Default 9464. */
        port: z.number().int().min(0).max(65535).default(9464),
      })
      .optional(),
    /**
     * Length of the window for the media workers' longest loop delay and longest task
     * (`gatehouse_media_worker_*_max_seconds`, the maximum of the last complete window),
     * and how often the forwarding-latency and event-loop histograms take in new samples.
     * Seconds. Default 10.
     */
    windowSeconds: z.number().int().min(1).max(300).default(10),
  })
  .prefault({});

export type MetricsConfig = z.infer<typeof metricsSection>;

/** Problems a schema cannot see alone: a non-loopback metrics listener without a token. */
export function metricsProblems(cfg: MetricsConfig): string[] {
  if (cfg.listen && !isLoopback(cfg.listen.host) && !cfg.token)
    return ["metrics.listen.host: a metrics listener beyond loopback needs metrics.token (or $GATEHOUSE_METRICS_TOKEN)"];
  return [];
}
