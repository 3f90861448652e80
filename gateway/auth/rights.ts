/**
 * Rights: which camera actions a user may perform, from the provider's claims and the configured
 * mapping. Pure: claims and camera configs in, booleans out. Default deny — a user whom no rule
 * names, or a camera no rule covers, gets nothing.
 */
import type { CameraConfig } from "../../config/schema.ts";
import { AUTH_ACTIONS, type AuthAction, type RightRule } from "../../config/sections/auth.ts";

export { AUTH_ACTIONS, type AuthAction };

/** The subject of a rights decision: provider subject and the role/group values from its claims. */
export interface Principal {
  readonly sub: string;
  readonly roles: readonly string[];
}

/** Roles in the development mapping (dev provider's users carry them in `groups`). */
export const DEV_VIEWER_ROLE = "gatehouse-viewer";
export const DEV_ADMIN_ROLE = "gatehouse-admin";
/** The demo camera the dev viewer may watch. */
export const DEV_DEMO_CAMERA = "demo";

/** The mapping `npm start` uses without configuration: viewer → demo camera live; admin → everything. */
export const DEV_RIGHTS: readonly RightRule[] = Object.freeze([
  { role: DEV_VIEWER_ROLE, cameras: [DEV_DEMO_CAMERA], cameraGroups: [], actions: ["live"] },
  { role: DEV_ADMIN_ROLE, cameras: ["*"], cameraGroups: [], actions: ["admin"] },
]);

const ALL_ACTIONS: ReadonlySet<AuthAction> = new Set(AUTH_ACTIONS);

interface CompiledRule {
  role: string | undefined;
  subject: string | undefined;
  allCameras: boolean;
  cameras: ReadonlySet<string>;
  groups: ReadonlySet<string>;
  actions: ReadonlySet<AuthAction>;
}

/** A compiled, immutable mapping. Replace the whole object to reload (the swap is atomic). */
export class Rights {
  private readonly rules: readonly CompiledRule[];

  constructor(rules: readonly RightRule[]) {
    this.rules = rules.map((r) => ({
      role: r.role,
      subject: r.subject,
      allCameras: r.cameras.includes("*"),
      cameras: new Set(r.cameras),
      groups: new Set(r.cameraGroups),
      // `admin` on a camera implies every action on it.
      actions: r.actions.includes("admin") ? ALL_ACTIONS : new Set(r.actions),
    }));
  }

  /** May `who` perform `action` on `camera`? */
  can(who: Principal, camera: CameraConfig, action: AuthAction): boolean {
    for (const rule of this.rules) {
      if (!rule.actions.has(action)) continue;
      if (!appliesTo(rule, who)) continue;
      if (covers(rule, camera)) return true;
    }
    return false;
  }

  /** Every action `who` may perform on `camera` (empty: the camera is invisible to them). */
  actions(who: Principal, camera: CameraConfig): AuthAction[] {
    const out = new Set<AuthAction>();
    for (const rule of this.rules) {
      if (!appliesTo(rule, who) || !covers(rule, camera)) continue;
      for (const a of rule.actions) out.add(a);
    }
    return AUTH_ACTIONS.filter((a) => out.has(a));
  }

  /** A camera is visible to a user who may do anything at all with it. */
  canSee(who: Principal, camera: CameraConfig): boolean {
    for (const rule of this.rules) if (appliesTo(rule, who) && covers(rule, camera)) return true;
    return false;
  }
}

function appliesTo(rule: CompiledRule, who: Principal): boolean {
  if (rule.subject !== undefined) return rule.subject === who.sub;
  return rule.role !== undefined && who.roles.includes(rule.role);
}

function covers(rule: CompiledRule, camera: CameraConfig): boolean {
  if (rule.allCameras || rule.cameras.has(camera.id)) return true;
  for (const g of camera.groups) if (rule.groups.has(g)) return true;
  return false;
}

/**
 * Role values found at the dotted `paths` in a claims object. Arrays of strings and single strings
 * are taken; anything else (numbers, objects, a path through a non-object) is ignored — a claim of
 * an unexpected shape grants nothing rather than failing the sign-in.
 */
export function rolesFromClaims(claims: unknown, paths: readonly string[]): string[] {
  const out = new Set<string>();
  for (const path of paths) {
    let v: unknown = claims;
    for (const part of path.split(".")) {
      if (v === null || typeof v !== "object" || Array.isArray(v) || !Object.hasOwn(v, part)) {
        v = undefined;
        break;
      }
      v = (v as Record<string, unknown>)[part];
    }
    if (typeof v === "string") out.add(v);
    else if (Array.isArray(v)) for (const x of v) if (typeof x === "string") out.add(x);
  }
  return [...out];
}
