/**
 * What to do when a fixed listening port is already taken by another program. With a
 * configuration file the operator chose the ports, so start-up stops (`fail`). With the
 * embedded defaults nobody chose them, so the gateway says which port is taken, listens on
 * a free one instead and carries on with everything else (`fallback`).
 */
import type { Logger } from "../config/log.ts";

export type TakenPortPolicy = "fail" | "fallback";

/** One port that was taken at start-up, and what listens instead. */
export interface TakenPort {
  /** What wanted the port: "front door", "TURN", "SIP". */
  readonly what: string;
  /** The port(s) asked for. */
  readonly port: string;
}

/** True for a bind failure because the address is in use (dgram, net and the native addon alike). */
export function isAddressInUse(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === "EADDRINUSE";
}

/**
 * Run `start(false)`; if it fails because a port is taken and the policy is `fallback`, log
 * which, record it in `taken`, and run `start(true)` (the caller then asks for free ports).
 * `ports` names the fixed ports `start` binds, for the message when the error does not say.
 */
export async function startWithFallback<T>(
  what: string,
  ports: readonly number[],
  policy: TakenPortPolicy,
  log: Logger,
  taken: TakenPort[],
  start: (anyPort: boolean) => Promise<T>,
): Promise<T> {
  try {
    return await start(false);
  } catch (err) {
    if (policy !== "fallback" || !isAddressInUse(err)) throw err;
    const errPort = (err as { port?: unknown }).port;
    const port = typeof errPort === "number" && errPort > 0 ? String(errPort) : ports.filter((p) => p > 0).join(", ");
    log.warn(`${what}: port ${port} is taken by another program; using a free port instead`, { port });
    taken.push({ what, port });
    return start(true);
  }
}
