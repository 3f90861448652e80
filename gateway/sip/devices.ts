/**
 * The configured door stations and how a request proves it comes from one of them:
 * digest credentials (REGISTER, challenged INVITEs), or an allow-listed source address.
 * Failed attempts feed the per-source lockout.
 */
import type { Brand } from "../../config/ids.ts";
import { CidrList } from "../../config/net/cidr.ts";
import type { Logger } from "../../config/log.ts";
import type { SipDeviceConfig } from "../../config/sections/sip.ts";
import type { DigestAlgorithm, DigestServer, VerifyFailure } from "../digest/server.ts";
import type { Lockout } from "./lockout.ts";
import type { SipRequest } from "./message.ts";

export type DeviceId = Brand<string, "SipDeviceId">;
export const deviceId = (s: string): DeviceId => s as DeviceId;

/** A configured device, frozen at start. */
export interface Device {
  readonly id: DeviceId;
  readonly name: string;
  readonly username: string;
  /** Digest password (never logged). */
  readonly password: string | undefined;
  readonly camera: string | undefined;
  readonly answerers: { readonly users: readonly string[]; readonly groups: readonly string[] };
  readonly dtmf: { readonly openDoor: string; readonly method: "rfc4733" | "info"; readonly durationMs: number };
  readonly allow: CidrList;
  readonly digestAlgorithms: readonly DigestAlgorithm[];
  readonly authenticateCalls: boolean;
}

export class DeviceDirectory {
  private readonly byId = new Map<string, Device>();
  private readonly byUser = new Map<string, Device>();

  constructor(configs: readonly SipDeviceConfig[]) {
    for (const c of configs) {
      const allow = new CidrList(c.allow, `sip.devices[${c.id}].allow`); // validated by the config schema
      const d: Device = Object.freeze({
        id: deviceId(c.id),
        name: c.name ?? c.id,
        username: c.username,
        password: c.password,
        camera: c.camera,
        answerers: Object.freeze({ users: Object.freeze([...c.answerers.users]), groups: Object.freeze([...c.answerers.groups]) }),
        dtmf: Object.freeze({ ...c.dtmf }),
        allow,
        digestAlgorithms: Object.freeze([...c.digestAlgorithms]),
        authenticateCalls: c.authenticateCalls,
      });
      this.byId.set(d.id, d);
      this.byUser.set(d.username.toLowerCase(), d);
    }
  }

  get(id: string): Device | undefined {
    return this.byId.get(id);
  }

  byUsername(user: string | undefined): Device | undefined {
    return user === undefined ? undefined : this.byUser.get(user.toLowerCase());
  }

  all(): Device[] {
    return [...this.byId.values()];
  }

  /** Devices that allow-list `address` (several may share a gateway box). */
  allowListed(address: string): Device[] {
    return this.all().filter((d) => d.allow.has(address));
  }
}

export type AuthOutcome =
  | { readonly ok: true; readonly device: Device }
  /** Answer with 401 and these WWW-Authenticate values. */
  | { readonly ok: false; readonly status: 401; readonly challenge: string[]; readonly failure: VerifyFailure }
  /** Answer 403: wrong credentials (counted towards lockout) or locked out. */
  | { readonly ok: false; readonly status: 403; readonly reason: string; readonly failure: VerifyFailure | "locked-out" | "wrong-user" };

export interface AuthStats {
  challenges: number;
  successes: number;
  failures: number;
  stale: number;
  replays: number;
}

/** Challenge when no device is configured at all. */
const DEFAULT_ALGORITHMS: readonly DigestAlgorithm[] = ["MD5"];

export class DeviceAuth {
  readonly stats: AuthStats = { challenges: 0, successes: 0, failures: 0, stale: 0, replays: 0 };
  private readonly devices: DeviceDirectory;
  private readonly digest: DigestServer;
  private readonly lockout: Lockout;
  private readonly realm: string;
  private readonly log: Logger;

  /** The algorithm lists of the configured devices, one entry per device (so common lists weigh more). */
  private readonly algorithmLists: readonly (readonly DigestAlgorithm[])[];

  constructor(opts: { devices: DeviceDirectory; digest: DigestServer; lockout: Lockout; realm: string; log: Logger }) {
    this.devices = opts.devices;
    this.digest = opts.digest;
    this.lockout = opts.lockout;
    this.realm = opts.realm;
    this.log = opts.log;
    const lists = this.devices.all().filter((d) => d.password !== undefined).map((d) => d.digestAlgorithms);
    this.algorithmLists = lists.length > 0 ? lists : [DEFAULT_ALGORITHMS];
  }

  /**
   * The algorithms offered to a request claiming `username`. A configured device gets its own
   * list; any other name gets one of the configured devices' lists, picked by a keyed hash of
   * the name (always the same for the same name, weighted like the configuration). A device set
   * to SHA-256 therefore cannot be told from an unknown name by its challenge: unknown names
   * get SHA-256 challenges in the same proportion, and consistently.
   */
  private algorithmsFor(claimed: Device | undefined, username: string | undefined): readonly DigestAlgorithm[] {
    if (claimed?.password !== undefined) return claimed.digestAlgorithms;
    const key = (claimed?.username ?? username ?? "").toLowerCase();
    return this.algorithmLists[this.digest.pick(key, this.algorithmLists.length)]!;
  }

  get lockouts(): Lockout {
    return this.lockout;
  }

  /** True while `address` is locked out (the refusal is counted). */
  locked(address: string): boolean {
    return this.lockout.isLocked(address);
  }

  /**
   * Check the request's Authorization against the device `claimed` (named by To for
   * REGISTER, by From for INVITE). Unknown devices are challenged like known ones and
   * then fail, so the response does not reveal which usernames exist.
   */
  check(req: SipRequest, sourceAddress: string, claimed: Device | undefined, claimedUser?: string): AuthOutcome {
    if (this.lockout.isLocked(sourceAddress)) return { ok: false, status: 403, reason: "Locked Out", failure: "locked-out" };
    const algorithms = this.algorithmsFor(claimed, claimedUser);
    const header = pickAuthorization(req, this.realm);
    const res = this.digest.verify(header, req.method, this.realm, algorithms, (u) => this.devices.byUsername(u)?.password, sourceAddress);
    if (res.ok) {
      const device = this.devices.byUsername(res.username)!;
      if (claimed && device.id !== claimed.id) {
        // Authenticated as one device while claiming another's identity.
        this.fail(sourceAddress, "wrong-user", res.username);
        return { ok: false, status: 403, reason: "Forbidden", failure: "wrong-user" };
      }
      this.lockout.succeed(sourceAddress);
      this.stats.successes++;
      return { ok: true, device };
    }
    switch (res.reason) {
      case "missing":
      case "malformed":
      case "bad-nonce":
      case "unsupported-algorithm":
        this.stats.challenges++;
        return { ok: false, status: 401, challenge: this.digest.challenge(this.realm, algorithms, sourceAddress), failure: res.reason };
      case "stale":
        this.stats.stale++;
        this.stats.challenges++;
        return { ok: false, status: 401, challenge: this.digest.challenge(this.realm, algorithms, sourceAddress, true), failure: "stale" };
      case "replay":
        // A reused nonce count: challenge again (not a password failure, so no lockout count).
        this.stats.replays++;
        this.log.info("sip: digest nonce count replayed", { address: sourceAddress, username: res.username });
        return { ok: false, status: 401, challenge: this.digest.challenge(this.realm, algorithms, sourceAddress), failure: "replay" };
      case "unknown-user":
      case "bad-response":
        this.fail(sourceAddress, res.reason, res.username);
        return { ok: false, status: 403, reason: "Forbidden", failure: res.reason };
    }
  }

  private fail(address: string, reason: string, username: string | undefined): void {
    this.stats.failures++;
    const locked = this.lockout.fail(address);
    this.log.info("sip: authentication failed", { address, reason, username });
    if (locked) this.log.warn("sip: source locked out after repeated authentication failures", { address });
  }
}

/** The Authorization (or Proxy-Authorization) value for our realm, if any. */
function pickAuthorization(req: SipRequest, realm: string): string | undefined {
  const all = [...req.headers.getAll("authorization"), ...req.headers.getAll("proxy-authorization")];
  if (all.length === 0) return undefined;
  const ours = all.find((v) => new RegExp(`realm\\s*=\\s*"?${realm.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"?`, "i").test(v));
  return ours ?? all[0];
}
