/**
 * The WHEP resource against hostile use, on the whole gateway (development sign-in, the
 * demo camera, one media worker, a 16-port ICE range): a signed-in user flooding offers
 * that never connect, another user's session touching a resource it did not create,
 * malformed offers and trickle bodies, and candidates that would make the gateway resolve
 * names or send checks where it should not. Real viewers are werift peers that connect
 * through WHEP as a browser does and receive the demo camera's video.
 */
import { randomInt } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
// werift as the DTLS client survives a repeated HelloVerifyRequest (a loaded machine).
import "../peers/werift-dtls-client.ts";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import type { HttpBrowser} from "../peers/oidc.ts";
import { signedInDevUser } from "../peers/oidc.ts";
import { chromiumAudioCodecs, chromiumVideoCodecs, WeriftViewer } from "../peers/werift-viewer.ts";
import { loopbackPeerConnection } from "../peers/loopback-peer.ts";

const PORTS = 16;
const CONNECT_TIMEOUT_MS = 4000;
const PER_SESSION = 5;
const PER_USER = 7;
const PER_REQUEST = 8;

let gw: Gateway;
let range: [number, number];
const browsers: HttpBrowser[] = [];
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  const first = randomInt(20000, 60000);
  range = [first, first + PORTS - 1];
  const config = parseConfig(
    {
      server: { host: "127.0.0.1", port: 0 },
      auth: { mode: "dev" },
      log: { level: "silent" },
      media: {
        icePortRange: range,
        workers: 1,
        viewers: { perSession: PER_SESSION, perUser: PER_USER, connectTimeoutMs: CONNECT_TIMEOUT_MS },
        ice: { maxCandidatesPerRequest: PER_REQUEST },
      },
    },
    {},
  );
  gw = await startGateway({ config, log: silentLogger });
}, 60_000);

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  for (const b of browsers) b.close();
  await gw?.close("test done");
});

const signedIn = (user: "admin" | "viewer"): Promise<HttpBrowser> => signedInDevUser(gw, user, browsers);

/** What a signed-in page sends with a state-changing request: its cookies, the CSRF token, its origin. */
async function pageHeaders(b: HttpBrowser): Promise<Record<string, string>> {
  const me = await b.request(`${gw.url}/auth/me`, { headers: { accept: "application/json" } });
  const csrf = (JSON.parse(me.body) as { csrfToken: string }).csrfToken;
  const cookie = [...(b.jar.get("127.0.0.1") ?? new Map<string, { value: string }>())].map(([k, c]) => `${k}=${c.value}`).join("; ");
  return { cookie, "x-csrf-token": csrf, origin: gw.url };
}

const whepUrl = () => `${gw.url}/whep/demo`;

async function post(headers: Record<string, string>, sdp: string): Promise<{ status: number; retryAfter: string | null; location: string | null; body: string }> {
  const res = await fetch(whepUrl(), { method: "POST", headers: { ...headers, "Content-Type": "application/sdp" }, body: sdp });
  return { status: res.status, retryAfter: res.headers.get("retry-after"), location: res.headers.get("location"), body: await res.text() };
}

async function patch(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(url, { method: "PATCH", headers: { ...headers, "Content-Type": "application/trickle-ice-sdpfrag" }, body });
  return { status: res.status, body: await res.text(), ms: performance.now() - t0 };
}

async function viewer(headers: Record<string, string>, o: { mungeOffer?: (sdp: string) => string } = {}): Promise<WeriftViewer> {
  const v = await WeriftViewer.connect({ whepUrl: whepUrl(), headers, ...o });
  cleanups.push(() => v.close());
  return v;
}

/** A real offer (werift, Chromium's codecs) whose peer is gone: the gateway answers it, and nobody ever checks. */
async function deadOffer(): Promise<string> {
  const pc = loopbackPeerConnection({
      codecs: { video: chromiumVideoCodecs(), audio: chromiumAudioCodecs() },
  });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  await pc.setLocalDescription(await pc.createOffer());
  const sdp = pc.localDescription!.sdp;
  await pc.close();
  return sdp;
}

/** Prometheus samples of one metric, by label set as written. */
async function metric(admin: Record<string, string>, name: string): Promise<Map<string, number>> {
  const res = await fetch(`${gw.url}/metrics`, { headers: { cookie: admin.cookie! } });
  expect(res.status).toBe(200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    const m = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`).exec(line);
    if (m) out.set(m[1] ?? "", Number(m[2]));
  }
  return out;
}

/** Resolves when every listed viewer has closed (the SFU's own event), with their reasons. */
function allClosed(ids: readonly string[]): Promise<(string | undefined)[]> {
  return Promise.all(
    ids.map((id) => {
      const v = gw.sfu.viewer(id as never);
      if (!v) return Promise.resolve("gone");
      return new Promise<string | undefined>((resolve) => v.once("closed", (reason) => resolve(reason)));
    }),
  );
}

/** Binds every free port of the ICE range on 127.0.0.1, as another program could. */
async function takeFreePorts(): Promise<Socket[]> {
  const socks: Socket[] = [];
  for (let p = range[0]; p <= range[1]; p++) {
    const s = createSocket("udp4");
    const ok = await new Promise<boolean>((resolve) => {
      s.once("error", () => resolve(false));
      s.bind(p, "127.0.0.1", () => resolve(true));
    });
    if (ok) socks.push(s);
    else s.close();
  }
  return socks;
}

/** Reasons a client may read: ours, short, never an exception's text. */
function expectOwnReason(body: string): void {
  const j = JSON.parse(body) as { error: string; reason: string };
  expect(j.error).toBe("bad_input");
  expect(j.reason.length).toBeLessThan(120);
  expect(j.reason).not.toMatch(/TypeError|Cannot |undefined|werift|DOMException|OperationError|\bat \S+:\d+/);
}

describe("WHEP hardening", () => {
  it("one viewer account can take all media ports: per-user and per-session bounds, 503 with Retry-After when no port is free, unconnected viewers reclaimed", async () => {
    const admin = await pageHeaders(await signedIn("admin"));
    const a = await pageHeaders(await signedIn("viewer"));
    const b = await pageHeaders(await signedIn("viewer"));
    const before = await metric(admin, "gatehouse_whep_refused_total");
    const offer = await deadOffer();

    // Every port taken (by another program here): 503 with Retry-After, not an answer without candidates.
    const socks = await takeFreePorts();
    try {
      const full = await post(admin, offer);
      expect(full.status).toBe(503);
      expect(Number(full.retryAfter)).toBe(Math.ceil(CONNECT_TIMEOUT_MS / 1000));
      expect(JSON.parse(full.body)).toEqual({ error: "overload", reason: "no free media port" });
    } finally {
      for (const s of socks) s.close();
    }
    expect((await metric(admin, "gatehouse_whep_refused_total")).get('{limit="ports"}')! - (before.get('{limit="ports"}') ?? 0)).toBe(1);

    // The flood: 24 offers at once from two sessions of one user, none of which will ever connect.
    const flood = await Promise.all([...Array.from({ length: 12 }, () => post(a, offer)), ...Array.from({ length: 12 }, () => post(b, offer))]);
    const created = flood.filter((r) => r.status === 201);
    const refused = flood.filter((r) => r.status === 429);
    expect(created).toHaveLength(PER_USER);
    expect(refused).toHaveLength(24 - PER_USER);
    expect(flood.slice(0, 12).filter((r) => r.status === 201).length).toBeLessThanOrEqual(PER_SESSION);
    for (const r of refused) {
      expect(Number(r.retryAfter)).toBe(Math.ceil(CONNECT_TIMEOUT_MS / 1000));
      expect(JSON.parse(r.body)).toEqual({ error: "rate_limited", reason: "too many attempts, try again later" });
    }
    for (const r of created) expect(r.body).toMatch(/^a=candidate:/m);
    const after = await metric(admin, "gatehouse_whep_refused_total");
    const delta = (l: string) => (after.get(`{limit="${l}"}`) ?? 0) - (before.get(`{limit="${l}"}`) ?? 0);
    expect(delta("session") + delta("user")).toBe(24 - PER_USER);

    // Another user still gets a port, connects and plays.
    const other = await viewer(admin);
    await other.connected;
    await other.video.waitForCount(20);

    // The flood's viewers never connected: the SFU closes them and frees their ports; the same user may watch again.
    const ids = created.map((r) => r.location!.split("/").pop()!);
    expect(await allClosed(ids)).toEqual(ids.map(() => "connect timeout"));
    const back = await viewer(a);
    await back.connected;
    await back.video.waitForCount(20);
    // The state reaches this thread in a message from the media worker, maybe after the first packets.
    await expect.poll(() => gw.sfu.viewerList().map((v) => v.state).sort()).toEqual(["connected", "connected"]);
  }, 60_000);

  it("WHEP resources are bound to their owner: another user's or session's DELETE and PATCH get 404", async () => {
    const ownerBrowser = await signedIn("viewer");
    const owner = await pageHeaders(ownerBrowser);
    const sameUserOtherSession = await pageHeaders(await signedIn("viewer"));
    const admin = await pageHeaders(await signedIn("admin"));
    const v = await viewer(owner);
    await v.connected;
    const frag = "a=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 9 typ host\r\n";

    for (const stranger of [admin, sameUserOtherSession]) {
      expect((await patch(v.resource, stranger, frag)).status).toBe(404);
      const del = await fetch(v.resource, { method: "DELETE", headers: stranger });
      expect(del.status).toBe(404);
      expect(await del.json()).toEqual({ error: "not_found", reason: "no such viewer session" });
    }
    expect(gw.sfu.viewer(v.resource.split("/").pop()! as never)?.state).toBe("connected");
    await v.video.waitForCount(10);

    expect((await patch(v.resource, owner, frag)).status).toBe(204);
    expect((await fetch(v.resource, { method: "DELETE", headers: owner })).status).toBe(200);
    expect(gw.sfu.viewer(v.resource.split("/").pop()! as never)).toBeUndefined();
  }, 30_000);

  it("malformed input answers 400 with a short reason of ours, never 500", async () => {
    const owner = await pageHeaders(await signedIn("viewer"));
    const offer = await deadOffer();

    // An audio section without a=mid (the offer's other sections bundle by mid).
    const noAudioMid = offer.replace(/(m=audio[^]*?)a=mid:1\r?\n/, "$1");
    expect(noAudioMid).not.toBe(offer);
    const r1 = await post(owner, noAudioMid);
    expect([r1.status, JSON.parse(r1.body)]).toEqual([400, { error: "bad_input", reason: "SDP offer: m-section 1 has no a=mid" }]);

    const v = await viewer(owner);
    await v.connected;
    const bad: Array<[string, string]> = [
      ["a=candidate:1 1 udp 2113937151 127.0.0.1 9 typ host\r\n", "ICE candidate without a=mid"],
      ["a=mid:7\r\na=candidate:1 1 udp 2113937151 127.0.0.1 9 typ host\r\n", "ICE candidate for an unknown mid"],
      ["a=mid:0\r\na=candidate:garbage\r\n", "malformed ICE candidate"],
      ["a=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 99999 typ host\r\n", "malformed ICE candidate: port"],
      ["a=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 9 typ\r\n", "malformed ICE candidate"],
      ["hello\r\n", "not a trickle-ice-sdpfrag (every line must be <type>=<value>)"],
    ];
    for (const [body, reason] of bad) {
      const r = await patch(v.resource, owner, body);
      expect([r.status, JSON.parse(r.body)], body).toEqual([400, { error: "bad_input", reason }]);
    }

    // Offers mutated at random: a viewer or a 400 with a reason of ours, never anything else.
    const lines = offer.split("\r\n");
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("drop"), at: fc.nat(lines.length - 1) }),
      fc.record({ kind: fc.constant("cut"), at: fc.nat(lines.length - 1), keep: fc.nat(40) }),
      fc.record({ kind: fc.constant("insert"), at: fc.nat(lines.length - 1), text: fc.string({ maxLength: 40 }) }),
      fc.record({ kind: fc.constant("dup"), at: fc.nat(lines.length - 1) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (muts) => {
        const l = [...lines];
        for (const m of muts) {
          const i = Math.min(m.at, l.length - 1);
          if (m.kind === "drop") l.splice(i, 1);
          else if (m.kind === "cut") l[i] = l[i]!.slice(0, (m as { keep: number }).keep);
          else if (m.kind === "insert") l.splice(i, 0, (m as { text: string }).text);
          else l.splice(i, 0, l[i]!);
        }
        const r = await post(owner, l.join("\r\n"));
        if (r.status === 201) {
          expect((await fetch(new URL(r.location!, gw.url), { method: "DELETE", headers: owner })).status).toBe(200);
          return;
        }
        expect(r.status, r.body).toBe(400);
        expectOwnReason(r.body);
      }),
      { numRuns: 40 },
    );
  }, 60_000);

  it("trickled candidates are trusted: names are dropped and counted without a lookup, refused ranges dropped, a bound per request", async () => {
    const admin = await pageHeaders(await signedIn("admin"));
    const owner = await pageHeaders(await signedIn("viewer"));
    const before = await metric(admin, "gatehouse_ice_candidates_dropped_total");
    const v = await viewer(owner);
    await v.connected;

    const names = [
      "a=candidate:1 1 udp 2122260223 3c2b7f0e-8f3a-4f5e-9f54-3a1d2c4b5e6f.local 54321 typ host",
      "a=candidate:2 1 udp 2122260223 gateway-probe.example.com 54322 typ host",
    ];
    const ranges = [
      "a=candidate:3 1 udp 2122260223 169.254.169.254 80 typ host",
      "a=candidate:4 1 udp 2122260223 224.0.0.251 5353 typ host",
      "a=candidate:5 1 udp 2122260223 0.0.0.0 9 typ host",
      "a=candidate:6 1 udp 2122260223 203.0.113.9 9 typ srflx raddr 0.0.0.0 rport 0",
    ];
    const r = await patch(v.resource, owner, ["a=mid:0", ...names, ...ranges, ""].join("\r\n"));
    expect(r.status).toBe(204);
    // An mDNS name used to hold the PATCH for werift's 10 s lookup: nothing is looked up now.
    expect(r.ms).toBeLessThan(2000);

    const tooMany = Array.from({ length: PER_REQUEST + 1 }, (_, i) => `a=candidate:${i + 10} 1 udp 2122260223 127.0.0.1 ${1000 + i} typ host`);
    const big = await patch(v.resource, owner, ["a=mid:0", ...tooMany, ""].join("\r\n"));
    expect([big.status, JSON.parse(big.body)]).toEqual([400, { error: "bad_input", reason: `too many ICE candidates (at most ${PER_REQUEST})` }]);

    // The offer's own candidates follow the same rules: an mDNS host candidate and a metadata
    // address are left out of what werift gets, and the viewer connects by its own checks.
    let hiddenNames = 0;
    const hidden = await viewer(owner, {
      mungeOffer: (sdp) => {
        const out = sdp
          .replace(/(a=candidate:\S+ 1 udp \d+ )127\.0\.0\.1( \d+ typ host)/g, "$1f3b1d1c4-3c3e-4c53-9d2e-31f4e8d3a9b7.local$2")
          .replace(/(a=mid:0\r\n)/, "$1a=candidate:9 1 udp 2122260223 169.254.169.254 80 typ host\r\n");
        hiddenNames = new Set(out.match(/ \S+\.local \d+ /g)).size;
        return out;
      },
    });
    expect(hiddenNames).toBeGreaterThan(0);
    await hidden.connected;
    await hidden.video.waitForCount(20);

    const after = await metric(admin, "gatehouse_ice_candidates_dropped_total");
    const delta = (reason: string) => (after.get(`{reason="${reason}"}`) ?? 0) - (before.get(`{reason="${reason}"}`) ?? 0);
    expect(delta("name")).toBe(names.length + hiddenNames);
    expect(delta("range")).toBe(ranges.length + 1);
  }, 60_000);
});
