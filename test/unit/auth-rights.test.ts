import { describe, expect, it } from "vitest";
import type { CameraConfig } from "../../config/schema.ts";
import type { RightRule } from "../../config/sections/auth.ts";
import { DEV_RIGHTS, Rights, rolesFromClaims } from "../../gateway/auth/rights.ts";

const cam = (id: string, groups: string[] = []): CameraConfig => ({ id, url: `rtsp://h/${id}`, transport: "tcp", alwaysOn: false, groups, tlsInsecure: false });
const rule = (r: Partial<RightRule> & Pick<RightRule, "actions">): RightRule => ({ cameras: [], cameraGroups: [], ...r });
const lobby = cam("lobby", ["ground"]);
const dock = cam("dock", ["outdoor"]);
const vault = cam("vault");

describe("rights", () => {
  const rights = new Rights([
    rule({ role: "guards", cameras: ["lobby"], actions: ["live", "playback"] }),
    rule({ role: "outdoor", cameraGroups: ["outdoor"], actions: ["live"] }),
    rule({ role: "doorman", cameras: ["lobby"], actions: ["answer_intercom", "talk"] }),
    rule({ role: "boss", cameras: ["*"], actions: ["admin"] }),
    rule({ subject: "sub-auditor", cameras: ["vault"], actions: ["playback"] }),
  ]);
  const who = (roles: string[], sub = "sub-x") => ({ sub, roles });

  it("denies by default", () => {
    expect(rights.can(who([]), lobby, "live")).toBe(false);
    expect(rights.canSee(who(["unknown-role"]), lobby)).toBe(false);
    expect(new Rights([]).can(who(["boss"]), lobby, "admin")).toBe(false);
  });

  it("grants per camera and per action", () => {
    expect(rights.can(who(["guards"]), lobby, "live")).toBe(true);
    expect(rights.can(who(["guards"]), lobby, "playback")).toBe(true);
    expect(rights.can(who(["guards"]), lobby, "talk")).toBe(false);
    expect(rights.can(who(["guards"]), dock, "live")).toBe(false);
    expect(rights.actions(who(["guards", "doorman"]), lobby)).toEqual(["live", "playback", "talk", "answer_intercom"]);
  });

  it("grants per camera group", () => {
    expect(rights.can(who(["outdoor"]), dock, "live")).toBe(true);
    expect(rights.can(who(["outdoor"]), lobby, "live")).toBe(false);
  });

  it("grants on every camera with * and makes admin imply every action", () => {
    for (const c of [lobby, dock, vault]) expect(rights.actions(who(["boss"]), c)).toEqual(["live", "playback", "talk", "answer_intercom", "admin"]);
  });

  it("grants by subject, and only to that subject", () => {
    expect(rights.can(who([], "sub-auditor"), vault, "playback")).toBe(true);
    expect(rights.can(who([], "sub-other"), vault, "playback")).toBe(false);
    // A role named like the subject does not match a subject rule.
    expect(rights.can(who(["sub-auditor"]), vault, "playback")).toBe(false);
  });

  it("makes a camera visible when any action is allowed on it", () => {
    expect(rights.canSee(who(["doorman"]), lobby)).toBe(true);
    expect(rights.canSee(who(["doorman"]), dock)).toBe(false);
  });

  it("has a development mapping: viewer → demo live only, admin → everything", () => {
    const dev = new Rights(DEV_RIGHTS);
    const demo = cam("demo", ["demo"]);
    expect(dev.actions({ sub: "v", roles: ["gatehouse-viewer"] }, demo)).toEqual(["live"]);
    expect(dev.canSee({ sub: "v", roles: ["gatehouse-viewer"] }, lobby)).toBe(false);
    expect(dev.actions({ sub: "a", roles: ["gatehouse-admin"] }, lobby)).toContain("admin");
  });
});

describe("rolesFromClaims", () => {
  it("reads flat and dotted paths, arrays and single strings", () => {
    const claims = { groups: ["a", "b"], realm_access: { roles: ["r1"] }, resource_access: { gatehouse: { roles: "r2" } } };
    expect(rolesFromClaims(claims, ["groups"])).toEqual(["a", "b"]);
    expect(rolesFromClaims(claims, ["realm_access.roles", "resource_access.gatehouse.roles"])).toEqual(["r1", "r2"]);
  });

  it("ignores claims of unexpected shape instead of failing", () => {
    expect(rolesFromClaims({ groups: [1, null, { x: 1 }, "ok"] }, ["groups"])).toEqual(["ok"]);
    expect(rolesFromClaims({ groups: { a: 1 } }, ["groups"])).toEqual([]);
    expect(rolesFromClaims({ realm_access: ["x"] }, ["realm_access.roles"])).toEqual([]);
    expect(rolesFromClaims(undefined, ["groups"])).toEqual([]);
    expect(rolesFromClaims("groups", ["length"])).toEqual([]);
  });

  it("does not walk into inherited properties", () => {
    expect(rolesFromClaims({}, ["constructor.name"])).toEqual([]);
    expect(rolesFromClaims({}, ["__proto__"])).toEqual([]);
  });

  it("de-duplicates", () => {
    expect(rolesFromClaims({ a: ["x", "x"], b: "x" }, ["a", "b"])).toEqual(["x"]);
  });
});
