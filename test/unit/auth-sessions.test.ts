import { describe, expect, it } from "vitest";
import { AuthError, UpstreamError } from "../../config/errors.ts";
import { userId } from "../../config/ids.ts";
import { silentLogger } from "../../config/log.ts";
import { SessionStore, type Refreshed, type SessionRecord } from "../../gateway/auth/sessions.ts";

const TTL = 600_000;

function setup(refresh: (rec: SessionRecord) => Promise<Refreshed> = async () => ({ roles: ["r"] }), maxSessions?: number) {
  let t = 1_000_000;
  const calls: string[] = [];
  const store = new SessionStore({
    ttlMs: TTL,
    maxAgeMs: 3 * TTL,
    clock: () => t,
    log: silentLogger,
    sweepMs: 0,
    ...(maxSessions ? { maxSessions } : {}),
    refresh: async (rec) => {
      calls.push(rec.id);
      return refresh(rec);
    },
  });
  const create = (opts: { withRefreshToken?: boolean } = {}) =>
    store.create({ sub: userId("u"), name: "U", roles: ["old"], refreshToken: opts.withRefreshToken === false ? undefined : "rt", idToken: "idt" });
  return { store, create, calls, advance: (ms: number) => (t += ms), now: () => t };
}

describe("session store", () => {
  it("is live for ttl, then lapsed; ensureLive refreshes a lapsed session with its refresh token", async () => {
    const { store, create, calls, advance } = setup(async () => ({ roles: ["new"], refreshToken: "rt2" }));
    const s = create();
    expect(store.isLive(s)).toBe(true);
    advance(TTL);
    expect(store.isLive(s)).toBe(false);
    expect(await store.ensureLive(s)).toBe(true);
    expect(calls).toHaveLength(1);
    expect(s.roles).toEqual(["new"]);
    expect(s.refreshToken).toBe("rt2");
    expect(store.isLive(s)).toBe(true);
  });

  it("refreshes in the background past half its lifetime, once at a time", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { store, create, calls, advance } = setup(async () => {
      await gate;
      return { roles: ["r"] };
    });
    const s = create();
    advance(TTL / 4);
    expect(await store.ensureLive(s)).toBe(true);
    expect(calls).toHaveLength(0);
    advance(TTL / 3);
    expect(await store.ensureLive(s)).toBe(true);
    expect(await store.ensureLive(s)).toBe(true);
    expect(calls).toHaveLength(1);
    release();
  });

  it("ends a lapsed session without refresh token (re-login)", async () => {
    const { store, create, advance } = setup();
    const s = create({ withRefreshToken: false });
    const ended: string[] = [];
    store.onEnd(s.id, (r) => ended.push(r));
    advance(TTL + 1);
    expect(await store.ensureLive(s)).toBe(false);
    expect(ended).toEqual(["expired"]);
    expect(store.get(s.id)).toBeUndefined();
  });

  it("ends the session when the provider refuses the refresh token", async () => {
    const { store, create, advance } = setup(async () => {
      throw new AuthError("UNAUTHORIZED", "invalid_grant");
    });
    const s = create();
    const ended: string[] = [];
    store.onEnd(s.id, (r) => ended.push(r));
    advance(TTL + 1);
    expect(await store.ensureLive(s)).toBe(false);
    expect(ended).toEqual(["revoked_at_provider"]);
  });

  it("while the provider is down: keeps the session until it lapses, backs off retries", async () => {
    const { store, create, calls, advance } = setup(async () => {
      throw new UpstreamError("down");
    });
    const s = create();
    const ended: string[] = [];
    store.onEnd(s.id, (r) => ended.push(r));
    advance(TTL * 0.6);
    await store.sweep(); // watched → background refresh attempt
    expect(calls).toHaveLength(1);
    expect(store.isLive(s)).toBe(true);
    await store.sweep();
    expect(calls).toHaveLength(1); // backing off
    advance(TTL * 0.5);
    await store.sweep(); // lapsed: watchers are told; the record stays revivable
    expect(ended).toEqual(["expired"]);
    expect(store.get(s.id)).toBe(s);
    expect(await store.ensureLive(s)).toBe(false);
  });

  it("watchers of a watched session are refreshed by the sweep and not told anything", async () => {
    const { store, create, calls, advance } = setup();
    const s = create();
    const ended: string[] = [];
    store.onEnd(s.id, (r) => ended.push(r));
    for (let i = 0; i < 8; i++) {
      advance(TTL * 0.3); // 2.4 ttl in all, below the 3 ttl max age
      await store.sweep();
    }
    expect(calls.length).toBeGreaterThanOrEqual(4);
    expect(ended).toEqual([]);
    expect(store.isLive(s)).toBe(true);
  });

  it("ends at max age whatever the refreshes", async () => {
    const { store, create, advance } = setup();
    const s = create();
    const ended: string[] = [];
    store.onEnd(s.id, (r) => ended.push(r));
    for (let i = 0; i < 20 && ended.length === 0; i++) {
      advance(TTL * 0.3);
      await store.sweep();
    }
    expect(ended).toEqual(["max_age"]);
    expect(store.get(s.id)).toBeUndefined();
  });

  it("tells every watcher once, even when one throws; unsubscribe works; unknown sessions answer at once", async () => {
    const { store, create } = setup();
    const s = create();
    const got: string[] = [];
    store.onEnd(s.id, () => {
      throw new Error("buggy watcher");
    });
    const off = store.onEnd(s.id, () => got.push("removed"));
    store.onEnd(s.id, (r) => got.push(r));
    off();
    expect(store.end(s.id, "logout")).toBe(true);
    expect(store.end(s.id, "logout")).toBe(false);
    expect(got).toEqual(["logout"]);
    const late = await new Promise<string>((resolve) => store.onEnd(s.id, resolve));
    expect(late).toBe("expired");
  });

  it("evicts the oldest session beyond its bound, and ends everything on close", () => {
    const { store, create } = setup(undefined, 3);
    const a = create();
    const ended: string[] = [];
    store.onEnd(a.id, (r) => ended.push(r));
    create();
    create();
    const d = create();
    expect(store.size).toBe(3);
    expect(ended).toEqual(["evicted"]);
    store.onEnd(d.id, (r) => ended.push(r));
    store.close();
    store.close();
    expect(ended).toEqual(["evicted", "closed"]);
    expect(store.size).toBe(0);
  });

  it("ends all sessions of a subject", () => {
    const { store, create } = setup();
    create();
    create();
    expect(store.endAllOf("u", "revoked")).toBe(2);
    expect(store.size).toBe(0);
  });

  it("ends what the provider's back-channel logout names: its session (sid), or every session of the subject", () => {
    const { store } = setup();
    const mk = (sub: string, sid: string | undefined) => store.create({ sub: userId(sub), name: sub, roles: [], refreshToken: undefined, idToken: undefined, providerSid: sid });
    const a1 = mk("alice", "op-1");
    const a2 = mk("alice", "op-2");
    const b1 = mk("bob", "op-1"); // another user under the same sid: a provider bug, never ours to end for alice
    const ended: string[] = [];
    for (const s of [a1, a2, b1]) store.onEnd(s.id, (r) => ended.push(`${s.sub}/${s.providerSid}:${r}`));
    expect(store.endFromProvider("alice", "op-1", "logged_out_at_provider")).toBe(1);
    expect(ended).toEqual(["alice/op-1:logged_out_at_provider"]);
    expect(store.endFromProvider(undefined, "op-9", "logged_out_at_provider")).toBe(0);
    expect(store.endFromProvider("bob", undefined, "logged_out_at_provider")).toBe(1);
    expect(store.endFromProvider(undefined, undefined, "logged_out_at_provider")).toBe(0);
    expect(store.get(a2.id)).toBe(a2);
  });

  it("keeps the signing-in browser (User-Agent capped), its address and last activity, across export and import", () => {
    const { store, advance } = setup();
    const rec = store.create({ sub: userId("u"), name: "U", roles: [], refreshToken: "rt", idToken: undefined, userAgent: "x".repeat(1000), address: "192.0.2.7" });
    expect(rec.userAgent).toHaveLength(300);
    expect(rec.lastSeenAt).toBe(rec.createdAt);
    advance(5000);
    rec.lastSeenAt = rec.createdAt + 5000;
    rec.address = "192.0.2.8";
    const [saved] = store.export();
    expect(saved).toMatchObject({ address: "192.0.2.8", lastSeenAt: rec.createdAt + 5000 });
    const { store: other } = setup();
    expect(other.import([{ ...saved!, id: "other-id" }, { ...saved!, id: "old-file", userAgent: undefined, address: undefined, lastSeenAt: undefined }])).toBe(2);
    const [a, b] = other.all();
    expect([a?.userAgent?.length, a?.address, a?.lastSeenAt]).toEqual([300, "192.0.2.8", rec.createdAt + 5000]);
    // A file written before these fields existed: last activity falls back to the sign-in.
    expect([b?.userAgent, b?.address, b?.lastSeenAt]).toEqual([undefined, undefined, saved!.createdAt]);
  });
});
