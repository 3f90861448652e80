/**
 * `/healthz` (the process answers) and `/readyz` (ready to serve, per component), for
 * load balancers, orchestrators and monitoring. Neither needs sign-in, so neither says
 * more than a component's name, whether it is ready, and a short reason when it is not.
 */
import type { RequestHandler } from "express";

export interface Readiness {
  ready: boolean;
  /** Why not (or a short note), never a secret or an address. */
  detail?: string;
}

/** One component's readiness: named, checked when asked. `required: false` is reported but never makes the gateway unready. */
export interface ReadinessCheck {
  name: string;
  required?: boolean;
  check(): Readiness;
}

export interface ReadinessReport {
  ready: boolean;
  components: Record<string, Readiness & { required: boolean }>;
}

export function readiness(checks: readonly ReadinessCheck[]): ReadinessReport {
  const components: ReadinessReport["components"] = {};
  let ready = true;
  for (const c of checks) {
    let r: Readiness;
    try {
      r = c.check();
    } catch {
      r = { ready: false, detail: "check failed" };
    }
    const required = c.required !== false;
    components[c.name] = { ...r, required };
    if (required && !r.ready) ready = false;
  }
  return { ready, components };
}

export const healthzHandler: RequestHandler = (_req, res) => {
  res.set("Cache-Control", "no-store").json({ ok: true });
};

/** 200 when every required component is ready, else 503; the body lists each. */
export function readyzHandler(checks: () => readonly ReadinessCheck[]): RequestHandler {
  return (_req, res) => {
    const report = readiness(checks());
    res.status(report.ready ? 200 : 503).set("Cache-Control", "no-store").json(report);
  };
}
