/**
 * The WHEP resource over real HTTP: status codes, headers, and the answer a werift
 * viewer (offering what Chromium offers) gets.
 */
import { afterEach, describe, expect, it } from "vitest";
import { RTCRtpCodecParameters } from "werift";
import { AuthError } from "../../config/errors.ts";
import { iceServerLinks, parseSdpFrag } from "../../gateway/http/whep.ts";
import { createPeerConnection } from "../../sfu/peer-connection.ts";
import { chromiumAudioCodecs, chromiumVideoCodecs, WeriftViewer, WhepHttpError } from "../peers/werift-viewer.ts";
import { startTestApp, type TestApp } from "./sfu-app.ts";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ICE = [
  { urls: ["turn:127.0.0.1:14049?transport=udp", "turn:127.0.0.1:8443?transport=tcp"], username: "1700000000:alice", credential: 'pa"ss\\w' },
  { urls: ["stun:127.0.0.1:14049"] },
];

async function app(opts: Parameters<typeof startTestApp>[0] = {}): Promise<TestApp> {
  const a = await startTestApp({ whep: { iceServers: () => ICE }, ...opts });
  cleanups.push(() => a.close());
  return a;
}

async function viewer(a: TestApp, o: Partial<Parameters<typeof WeriftViewer.connect>[0]> = {}): Promise<WeriftViewer> {
  const v = await WeriftViewer.connect({ whepUrl: a.whep("cam1"), ...o });
  cleanups.push(() => v.close());
  return v;
}

async function post(url: string, body: string, type = "application/sdp"): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "Content-Type": type }, body });
}

const EXPECTED_LINKS = [
  '<turn:127.0.0.1:14049?transport=udp>; rel="ice-server"; username="1700000000:alice"; credential="pa\\"ss\\\\w"; credential-type="password"',
  '<turn:127.0.0.1:8443?transport=tcp>; rel="ice-server"; username="1700000000:alice"; credential="pa\\"ss\\\\w"; credential-type="password"',
  '<stun:127.0.0.1:14049>; rel="ice-server"',
];

describe("WHEP", () => {
  it("answers an offer with 201, the answer SDP, Location, ETag and ICE server links", async () => {
    const a = await app();
    const v = await viewer(a);
    expect(new URL(v.resource).pathname).toMatch(/^\/whep\/cam1\/[A-Za-z0-9_-]{16}$/);
    expect(v.etag).toMatch(/^".+"$/);
    expect(v.links).toEqual(EXPECTED_LINKS);
    const sdp = v.answerSdp;
    expect(sdp).toMatch(/^m=video 9 UDP\/TLS\/RTP\/SAVPF 108\r?$/m);
    expect(sdp).toMatch(/a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f/);
    expect(sdp).toMatch(/a=rtcp-fb:108 nack pli/);
    expect(sdp).toMatch(/^m=audio 9 UDP\/TLS\/RTP\/SAVPF 111 0 8\r?$/m);
    expect(sdp.match(/^a=sendonly/gm)).toHaveLength(2);
    expect(sdp.match(/^a=msid:gatehouse-cam1 /gm)).toHaveLength(2); // one stream: lip sync in the browser
    expect(sdp).not.toMatch(/rtx/);
    expect(sdp).toMatch(/^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host/m);
    // We are the DTLS server: the browser's ClientHello goes out as soon as ICE works (RFC 5763 §5).
    expect(sdp).toMatch(/^a=setup:passive/m);
    expect(sdp).not.toMatch(/^a=setup:active/m);
    await v.connected;
  });

  it("writes the announced address into host candidates (1:1 NAT)", async () => {
    const a = await app({ sfu: { announcedAddress: "203.0.113.7" } });
    // Only the answer is looked at: a viewer that applied it would send its checks to the
    // announced address, off this host (the network guard refuses that).
    const pc = createPeerConnection({ iceServers: [], codecs: { video: chromiumVideoCodecs(), audio: chromiumAudioCodecs() } });
    cleanups.push(() => pc.close());
    pc.addTransceiver("video", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    const res = await post(a.whep("cam1"), pc.localDescription!.sdp);
    expect(res.status).toBe(201);
    const resource = new URL(res.headers.get("location")!, a.whep("cam1")).toString();
    cleanups.push(() => fetch(resource, { method: "DELETE" }));
    const candidates = (await res.text()).match(/^a=candidate:.*$/gm) ?? [];
    expect(candidates.length).toBeGreaterThan(0);
    for (const c of candidates) expect(c).toMatch(/ udp \d+ 203\.0\.113\.7 \d+ typ host/);
  });

  it("answers OPTIONS with Accept-Post and ICE server links", async () => {
    const a = await app();
    const res = await fetch(a.whep("cam1"), { method: "OPTIONS" });
    expect(res.status).toBe(204);
    expect(res.headers.get("accept-post")).toBe("application/sdp");
    expect(res.headers.get("link")!.split(/,\s*(?=<)/)).toEqual(EXPECTED_LINKS);
  });

  it("refuses what it cannot serve with the right status and a reason", async () => {
    const a = await app();
    const r415 = await post(a.whep("cam1"), "v=0", "text/plain");
    expect(r415.status).toBe(415);
    expect(r415.headers.get("accept-post")).toBe("application/sdp");
    const r404 = await post(a.whep("nope"), "v=0");
    expect(r404.status).toBe(404);
    expect(await r404.json()).toMatchObject({ error: "not_found" });
    const r400 = await post(a.whep("cam1"), "hello");
    expect(r400.status).toBe(400);
    expect(await r400.json()).toEqual({ error: "bad_input", reason: "not an SDP offer (first line must be v=0)" });
    const empty = await post(a.whep("cam1"), "");
    expect(empty.status).toBe(400);
    const big = await post(a.whep("cam1"), "v=0\n" + "a=x\n".repeat(40000));
    expect(big.status).toBe(413);
    const get = await fetch(a.whep("cam1"));
    expect(get.status).toBe(405);
    // A browser that offers only VP8.
    const vp8 = new RTCRtpCodecParameters({ mimeType: "video/VP8", clockRate: 90000, payloadType: 96 });
    const err = await WeriftViewer.connect({ whepUrl: a.whep("cam1"), videoCodecs: [vp8] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WhepHttpError);
    expect((err as WhepHttpError).status).toBe(400);
    expect(JSON.parse((err as WhepHttpError).body)).toMatchObject({ reason: expect.stringMatching(/no common video codec/) });
    expect(a.sfu.viewerList()).toHaveLength(0);
  });

  it("maps authorization failures to 401 and 403", async () => {
    const a = await app({
      cameras: ["cam1", "cam2"],
      whep: {
        iceServers: () => [],
        authorize: (_req, cam) => {
          throw new AuthError(cam === "cam1" ? "UNAUTHORIZED" : "FORBIDDEN", "no");
        },
      },
    });
    expect((await post(a.whep("cam1"), "v=0")).status).toBe(401);
    expect((await post(a.whep("cam2"), "v=0")).status).toBe(403);
  });

  it("ends the viewer when the gateway's onViewer hook refuses it", async () => {
    const a = await app({
      whep: {
        iceServers: () => [],
        onViewer: () => {
          throw new AuthError("FORBIDDEN", "session revoked");
        },
      },
    });
    const err = await WeriftViewer.connect({ whepUrl: a.whep("cam1") }).catch((e: unknown) => e);
    expect((err as WhepHttpError).status).toBe(403);
    expect(a.sfu.viewerList()).toHaveLength(0);
  });

  it("ends a session on DELETE and forgets it", async () => {
    const a = await app();
    const v = await viewer(a);
    await v.connected;
    const wrongCamera = v.resource.replace("/cam1/", "/cam2/");
    expect((await fetch(wrongCamera, { method: "DELETE" })).status).toBe(404);
    expect(a.sfu.viewerList()).toHaveLength(1);
    const res = await fetch(v.resource, { method: "DELETE" });
    expect(res.status).toBe(200);
    expect(a.sfu.viewerList()).toHaveLength(0);
    expect((await fetch(v.resource, { method: "DELETE" })).status).toBe(404);
    expect((await fetch(v.resource.replace(/[^/]+$/, "unknown"), { method: "DELETE" })).status).toBe(404);
  });

  it("takes trickled candidates on PATCH and refuses ICE restarts and stale ETags", async () => {
    const a = await app();
    const v = await viewer(a);
    const patch = (body: string, headers: Record<string, string> = {}) =>
      fetch(v.resource, { method: "PATCH", headers: { "Content-Type": "application/trickle-ice-sdpfrag", ...headers }, body });
    const ufrag = /a=ice-ufrag:(\S+)/.exec(v.pc.localDescription!.sdp)![1]!;
    const cand = "a=candidate:1 1 udp 2113937151 127.0.0.1 40000 typ host";
    const ok = await patch(`a=ice-ufrag:${ufrag}\r\na=mid:0\r\n${cand}\r\n`, { "If-Match": v.etag! });
    expect(ok.status).toBe(204);
    expect((await patch(`${cand}\r\n`, { "If-Match": '"stale"' })).status).toBe(412);
    expect((await patch(`a=ice-ufrag:other\r\na=ice-pwd:xxxxxxxxxxxxxxxxxxxxxx\r\n`)).status).toBe(405);
    const wrongType = await fetch(v.resource, { method: "PATCH", headers: { "Content-Type": "application/sdp" }, body: cand });
    expect(wrongType.status).toBe(415);
    const unknown = await fetch(v.resource.replace(/[^/]+$/, "unknown"), {
      method: "PATCH",
      headers: { "Content-Type": "application/trickle-ice-sdpfrag" },
      body: cand,
    });
    expect(unknown.status).toBe(404);
  });

  it("answers 503 with Retry-After when the ICE port range is full, and frees the ports of viewers that never connect", async () => {
    // Three ports, one viewer each; a viewer not connected after 4 s is closed.
    const first = 20000 + Math.floor(Math.random() * 40000);
    const a = await app({ sfu: { icePortRange: [first, first + 2], connectTimeoutMs: 4000 } });
    expect(a.sfu.viewerCapacity).toBe(3);
    // Offers whose peers are gone at once: answered, never checked.
    const dead = async () => {
      const v = await WeriftViewer.connect({ whepUrl: a.whep("cam1") });
      await v.pc.close();
      return v;
    };
    const held = [await dead(), await dead(), await dead()];
    for (const v of held) expect(v.answerSdp).toMatch(/^a=candidate:/m);
    const full = await WeriftViewer.connect({ whepUrl: a.whep("cam1") }).catch((e: unknown) => e);
    expect(full).toBeInstanceOf(WhepHttpError);
    expect([(full as WhepHttpError).status, JSON.parse((full as WhepHttpError).body)]).toEqual([503, { error: "overload", reason: "no free media port" }]);
    const res = await post(a.whep("cam1"), held[0]!.pc.localDescription!.sdp);
    expect([res.status, res.headers.get("retry-after")]).toEqual([503, "4"]);
    expect(a.sfu.viewersRefused).toBe(2);
    const reasons = await Promise.all(a.sfu.viewerList().map((v) => new Promise((r) => v.once("closed", r))));
    expect(reasons).toEqual(["connect timeout", "connect timeout", "connect timeout"]);
    const v = await viewer(a);
    await v.connected;
  });

  it("formats Link headers and reads sdpfrags", () => {
    expect(iceServerLinks(ICE)).toEqual(EXPECTED_LINKS);
    expect(iceServerLinks([{ urls: ["turn:bad host"] }])).toEqual([]);
    expect(parseSdpFrag("a=ice-ufrag:u1\r\na=mid:0\r\na=candidate:1 1 udp 1 10.0.0.1 9 typ host\r\na=end-of-candidates\r\n")).toEqual({
      ufrag: "u1",
      candidates: [{ candidate: "candidate:1 1 udp 1 10.0.0.1 9 typ host", mid: "0" }],
    });
  });
});
