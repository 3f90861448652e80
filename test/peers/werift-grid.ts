/**
 * A werift peer as the web client's grid: a browser signed in to a gateway (cookie, CSRF token,
 * origin), and ONE peer connection offering recvonly video sections (the slots) and audio
 * sections, POSTed to `/grid` as web/grid-session.js does. Every decrypted RTP packet it receives
 * is recorded, by kind (see ReceivedTrack), so a test can wait for a bound slot's pictures.
 *
 *   const c = await GridClient.signIn(gw, "viewer", browsers);
 *   const grid = await openWeriftGrid(c, { video: 2, audio: 1 });
 *   await c.send("PUT", `${grid.resource}/slots/${grid.mids[0]}`, { json: { camera: "cam1" } });
 *   await grid.video.waitForCount(50);
 */
import type { RTCPeerConnection, RtpPacket } from "werift";
import { HttpBrowser, signIn } from "./oidc.ts";
import { chromiumAudioCodecs, chromiumVideoCodecs, ReceivedTrack } from "./werift-viewer.ts";
import { loopbackPeerConnection } from "./loopback-peer.ts";
import "./werift-dtls-client.ts";

type Gw = { url: string; auth: { devUsers?: ReadonlyArray<{ username: string; password: string }> | undefined } };

/** A browser signed in to one gateway (development sign-in), sending as a page of that gateway would. */
export class GridClient {
  readonly browser: HttpBrowser;
  readonly url: string;
  private readonly csrf: string;

  private constructor(browser: HttpBrowser, url: string, csrf: string) {
    this.browser = browser;
    this.url = url;
    this.csrf = csrf;
  }

  /** Signs in as a development account; the browser joins `browsers` (the caller closes them). */
  static async signIn(gw: Gw, user: string, browsers: HttpBrowser[]): Promise<GridClient> {
    const b = new HttpBrowser();
    browsers.push(b);
    const account = gw.auth.devUsers?.find((u) => u.username === user);
    if (!account) throw new Error(`no development account "${user}"`);
    const res = await signIn(b, `${gw.url}/auth/login`, user, account.password);
    if (res.status !== 200) throw new Error(`signing in as ${user} ended with ${res.status}`);
    const csrf = (JSON.parse((await b.request(`${gw.url}/auth/csrf`, { headers: { accept: "application/json" } })).body) as { token: string }).token;
    return new GridClient(b, gw.url, csrf);
  }

  /** The headers a page of this gateway sends (its cookies, the CSRF token, its origin), e.g. for a WHEP client. */
  headers(): Record<string, string> {
    const cookie = [...(this.browser.jar.get(new URL(this.url).hostname) ?? new Map<string, { value: string }>())].map(([k, c]) => `${k}=${c.value}`).join("; ");
    return { cookie, "x-csrf-token": this.csrf, origin: this.url };
  }

  async send(method: string, url: string, body?: { sdp?: string; json?: unknown }): Promise<{ status: number; body: string; location: string | null }> {
    const headers: Record<string, string> = { "x-csrf-token": this.csrf, origin: this.url, accept: "application/json" };
    let payload: string | undefined;
    if (body?.sdp !== undefined) {
      headers["content-type"] = "application/sdp";
      payload = body.sdp;
    } else if (body?.json !== undefined) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body.json);
    }
    const r = await this.browser.request(new URL(url, this.url).toString(), { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
    return { status: r.status, body: r.body, location: r.headers.get("location") };
  }
}

export interface WeriftGrid {
  pc: RTCPeerConnection;
  /** Path of the session resource. */
  resource: string;
  /** The video slots' mids, in the gateway's order. */
  mids: string[];
  /** Every video / audio packet received, whichever slot carried it. */
  video: ReceivedTrack;
  audio: ReceivedTrack;
  /** With `bind`: the gateway's answer for each slot bound with the offer. */
  bound: Record<string, unknown>[];
}

/**
 * Offers `video` recvonly video slots and `audio` audio sections, POSTs to /grid, waits until connected.
 * `bind`: cameras for the first video slots, bound with the offer (one JSON POST, as the web client does).
 */
export async function openWeriftGrid(c: GridClient, o: { video: number; audio: number; bind?: string[]; timeoutMs?: number }): Promise<WeriftGrid> {
  const timeoutMs = o.timeoutMs ?? 20_000;
  const videoCodecs = chromiumVideoCodecs();
  const pc = loopbackPeerConnection({
      codecs: { video: videoCodecs, audio: chromiumAudioCodecs() },
  });
  try {
    for (let i = 0; i < o.video; i++) pc.addTransceiver("video", { direction: "recvonly" });
    for (let i = 0; i < o.audio; i++) pc.addTransceiver("audio", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    const connected = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`grid not connected after ${timeoutMs} ms`)), timeoutMs);
      pc.connectionStateChange.subscribe((s) => {
        if (s === "connected") resolve();
        else if (s === "failed") reject(new Error("grid connection failed"));
        else return;
        clearTimeout(timer);
      });
    });
    const sdp = pc.localDescription!.sdp;
    const offered = pc.getTransceivers().filter((t) => t.kind === "video");
    const r = o.bind
      ? await c.send("POST", "/grid", { json: { offer: sdp, slots: o.bind.map((camera, i) => ({ mid: offered[i]!.mid, camera })) } })
      : await c.send("POST", "/grid", { sdp });
    if (r.status !== 201 || !r.location) throw new Error(`POST /grid answered ${r.status}: ${r.body}`);
    const body = o.bind ? (JSON.parse(r.body) as { answer: string; slots: Record<string, unknown>[] }) : { answer: r.body, slots: [] };
    await pc.setRemoteDescription({ type: "answer", sdp: body.answer });
    const video = new ReceivedTrack("video", 50_000, timeoutMs);
    const audio = new ReceivedTrack("audio", 50_000, timeoutMs);
    const videoPts = new Set(videoCodecs.map((x) => x.payloadType));
    pc.dtlsTransports[0]!.onRtp.subscribe((rtp: RtpPacket) => {
      const h = rtp.header;
      const p = { ssrc: h.ssrc, payloadType: h.payloadType, sequenceNumber: h.sequenceNumber, timestamp: h.timestamp, marker: h.marker, payload: Buffer.from(rtp.payload), at: performance.now() };
      (videoPts.has(h.payloadType) ? video : audio).push(p);
    });
    await connected;
    const resource = new URL(r.location, c.url).pathname;
    const state = JSON.parse((await c.send("GET", resource)).body) as { slots: { mid: string; kind: string }[] };
    return { pc, resource, mids: state.slots.filter((s) => s.kind === "video").map((s) => s.mid), video, audio, bound: body.slots };
  } catch (err) {
    await pc.close().catch(() => {});
    throw err;
  }
}
