import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { BadInputError } from "../../config/errors.ts";
import {
  RtspHeaders,
  RtspStreamParser,
  interleavedFrame,
  serializeRequest,
  serializeResponse,
  type RtspStreamEvent,
} from "../../gateway/rtsp/message.ts";

const sdp = Buffer.from("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=x\r\nm=video 0 RTP/AVP 96\r\n");

function pushAll(p: RtspStreamParser, bufs: Buffer[]): RtspStreamEvent[] {
  return bufs.flatMap((b) => p.push(b));
}

/** Events reduced to comparable plain values. */
function plain(evs: RtspStreamEvent[]): unknown[] {
  return evs.map((e) => {
    if (e.type === "interleaved") return { t: "i", ch: e.channel, d: e.data.toString("hex") };
    if (e.type === "error") return { t: "e", fatal: e.fatal, m: e.error.message };
    const m = e.message;
    return { t: e.type, start: "status" in m ? m.status : m.method, h: m.headers.entries(), b: m.body.toString("hex") };
  });
}

describe("RtspHeaders", () => {
  it("is case-insensitive, order-preserving and multi-valued", () => {
    const h = new RtspHeaders();
    h.append("WWW-Authenticate", "Digest a");
    h.append("CSeq", "1");
    h.append("www-authenticate", "Basic b");
    expect(h.get("WWW-AUTHENTICATE")).toBe("Digest a");
    expect(h.getAll("www-Authenticate")).toEqual(["Digest a", "Basic b"]);
    expect(h.has("cseq")).toBe(true);
    h.set("WWW-Authenticate", "x");
    expect(h.entries()).toEqual([
      ["WWW-Authenticate", "x"],
      ["CSeq", "1"],
    ]);
    h.delete("CSEQ");
    expect(h.has("CSeq")).toBe(false);
    h.set("Session", "abc");
    expect(h.entries().at(-1)).toEqual(["Session", "abc"]);
    // entries() is a copy
    h.entries()[0]![1] = "mutated";
    expect(h.get("www-authenticate")).toBe("x");
  });
});

describe("serialize", () => {
  it("writes a request with computed Content-Length", () => {
    const headers = new RtspHeaders([["CSeq", "2"], ["Content-Length", "999"]]);
    const buf = serializeRequest({ method: "SET_PARAMETER", uri: "rtsp://h/a", headers, body: Buffer.from("x: y\r\n") });
    expect(buf.toString("latin1")).toBe(
      "SET_PARAMETER rtsp://h/a RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 6\r\n\r\nx: y\r\n",
    );
    const empty = serializeRequest({ method: "OPTIONS", uri: "*", headers, body: Buffer.alloc(0) });
    expect(empty.toString()).toBe("OPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n");
  });

  it("writes a response", () => {
    const headers = new RtspHeaders({ CSeq: "3", "Content-Type": "application/sdp" });
    const buf = serializeResponse({ status: 200, reason: "OK", headers, body: sdp });
    expect(buf.toString()).toBe(
      `RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Type: application/sdp\r\nContent-Length: ${sdp.length}\r\n\r\n${sdp}`,
    );
  });

  it("refuses header injection and bad start lines", () => {
    const bad = new RtspHeaders({ Authorization: "x\r\nEvil: 1" });
    expect(() => serializeRequest({ method: "OPTIONS", uri: "*", headers: bad, body: Buffer.alloc(0) })).toThrow(
      BadInputError,
    );
    const h = new RtspHeaders();
    expect(() => serializeRequest({ method: "OPT IONS", uri: "*", headers: h, body: Buffer.alloc(0) })).toThrow(
      BadInputError,
    );
    expect(() => serializeRequest({ method: "OPTIONS", uri: "rtsp://a b", headers: h, body: Buffer.alloc(0) })).toThrow(
      BadInputError,
    );
    expect(() => serializeResponse({ status: 20, reason: "OK", headers: h, body: Buffer.alloc(0) })).toThrow(
      BadInputError,
    );
    expect(() => serializeResponse({ status: 200, reason: "O\nK", headers: h, body: Buffer.alloc(0) })).toThrow(
      BadInputError,
    );
  });

  it("frames interleaved data", () => {
    expect(interleavedFrame(1, Buffer.from([9, 8])).toString("hex")).toBe("2401000209" + "08");
    expect(() => interleavedFrame(256, Buffer.alloc(1))).toThrow(BadInputError);
    expect(() => interleavedFrame(0, Buffer.alloc(65536))).toThrow(BadInputError);
    expect(interleavedFrame(0, Buffer.alloc(65535)).length).toBe(65539);
  });
});

describe("RtspStreamParser", () => {
  const describeResp = serializeResponse({
    status: 200,
    reason: "OK",
    headers: new RtspHeaders({ CSeq: "2", "Content-Base": "rtsp://h/a/", "Content-Type": "application/sdp" }),
    body: sdp,
  });
  const rtp = Buffer.from("80e000010000000100000001deadbeef", "hex");
  const stream = Buffer.concat([
    describeResp,
    interleavedFrame(0, rtp),
    interleavedFrame(1, Buffer.from("81c80006", "hex")),
    Buffer.from("\r\n"), // stray CRLF between messages is tolerated
    serializeRequest({ method: "GET_PARAMETER", uri: "rtsp://h/a", headers: new RtspHeaders({ CSeq: "7" }), body: Buffer.alloc(0) }),
    interleavedFrame(0, Buffer.alloc(0)),
    Buffer.from("RTSP/1.0 401 Unauthorized\nCSeq: 3\nWWW-Authenticate: Digest realm=\"r\",\n nonce=\"n\"\n\n"),
  ]);

  it("parses messages interleaved with $ frames", () => {
    const evs = new RtspStreamParser().push(stream);
    expect(evs.map((e) => e.type)).toEqual(["response", "interleaved", "interleaved", "request", "interleaved", "response"]);
    const r = evs[0] as Extract<RtspStreamEvent, { type: "response" }>;
    expect(r.message.status).toBe(200);
    expect(r.message.reason).toBe("OK");
    expect(r.message.headers.get("content-base")).toBe("rtsp://h/a/");
    expect(r.message.body.equals(sdp)).toBe(true);
    const i = evs[1] as Extract<RtspStreamEvent, { type: "interleaved" }>;
    expect(i.channel).toBe(0);
    expect(i.data.equals(rtp)).toBe(true);
    const q = evs[3] as Extract<RtspStreamEvent, { type: "request" }>;
    expect(q.message.method).toBe("GET_PARAMETER");
    expect(q.message.uri).toBe("rtsp://h/a");
    const last = evs[5] as Extract<RtspStreamEvent, { type: "response" }>;
    expect(last.message.status).toBe(401);
    // bare LF line ends and a folded header line
    expect(last.message.headers.get("www-authenticate")).toBe('Digest realm="r", nonce="n"');
  });

  it("gives the same events whatever the split (every byte boundary)", () => {
    const whole = plain(new RtspStreamParser().push(stream));
    for (let i = 1; i < stream.length; i++) {
      const p = new RtspStreamParser();
      expect(plain(pushAll(p, [stream.subarray(0, i), stream.subarray(i)])), `split at ${i}`).toEqual(whole);
      expect(p.buffered).toBe(0);
    }
    // Regression: a header split over three chunks was once rescanned from a stale offset.
    const head = Buffer.concat([describeResp, interleavedFrame(0, rtp)]);
    const headWhole = plain(new RtspStreamParser().push(head));
    for (let i = 1; i < head.length; i++)
      for (let j = i + 1; j < head.length; j += 3) {
        const parts = [head.subarray(0, i), head.subarray(i, j), head.subarray(j)];
        expect(plain(pushAll(new RtspStreamParser(), parts)), `split at ${i},${j}`).toEqual(headWhole);
      }
    const p = new RtspStreamParser();
    const bytes = [...stream].map((b) => Buffer.from([b]));
    expect(plain(pushAll(p, bytes))).toEqual(whole);
  });

  it("gives the same events for any chunking (property)", () => {
    const whole = plain(new RtspStreamParser().push(stream));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 20 }), (cuts) => {
        const pts = [0, ...cuts.sort((a, b) => a - b), stream.length];
        const parts = pts.slice(1).map((e, k) => stream.subarray(pts[k]!, e));
        expect(plain(pushAll(new RtspStreamParser(), parts))).toEqual(whole);
      }),
    );
  });

  it("reports a malformed status line without losing framing", () => {
    const bad = Buffer.from("RTSP/1.0 abc Nope\r\nCSeq: 1\r\nContent-Length: 3\r\n\r\nxyz");
    const good = Buffer.from("RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n");
    const evs = new RtspStreamParser().push(Buffer.concat([bad, interleavedFrame(2, Buffer.from([1])), good]));
    expect(evs.map((e) => e.type)).toEqual(["error", "interleaved", "response"]);
    expect(evs[0]).toMatchObject({ fatal: false });
    const e = evs[0] as Extract<RtspStreamEvent, { type: "error" }>;
    expect(e.error).toBeInstanceOf(BadInputError);
    expect(e.error.message).toMatch(/start line/);
  });

  it("rejects an HTTP status line and a header line without a colon", () => {
    const p = new RtspStreamParser();
    expect(p.push(Buffer.from("HTTP/1.1 200 OK\r\n\r\n"))[0]).toMatchObject({ type: "error", fatal: false });
    expect(p.push(Buffer.from("RTSP/1.0 200 OK\r\nCSeq 4\r\n\r\n"))[0]).toMatchObject({ type: "error", fatal: false });
    expect(p.failed).toBe(false);
  });

  it("fails fatally on an absurd Content-Length", () => {
    const p = new RtspStreamParser({ maxBodyBytes: 1000 });
    const evs = p.push(Buffer.from("RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 99999999999\r\n\r\n"));
    expect(evs).toHaveLength(1);
    expect(evs[0]).toMatchObject({ type: "error", fatal: true });
    expect(p.failed).toBe(true);
    expect(p.push(Buffer.from("RTSP/1.0 200 OK\r\n\r\n"))).toEqual([]);
    p.reset();
    expect(p.push(Buffer.from("RTSP/1.0 200 OK\r\n\r\n"))[0]!.type).toBe("response");
  });

  it("fails fatally on negative, non-numeric or conflicting Content-Length", () => {
    for (const cl of ["-1", "1e3", "abc", "5\r\nContent-Length: 6"]) {
      const evs = new RtspStreamParser().push(Buffer.from(`RTSP/1.0 200 OK\r\nContent-Length: ${cl}\r\n\r\n`));
      expect(evs[0], cl).toMatchObject({ type: "error", fatal: true });
    }
  });

  it("fails fatally when the header block exceeds the limit, even when trickled", () => {
    const p = new RtspStreamParser({ maxHeaderBytes: 256 });
    const evs: RtspStreamEvent[] = [];
    evs.push(...p.push(Buffer.from("RTSP/1.0 200 OK\r\n")));
    for (let i = 0; i < 100 && !p.failed; i++) evs.push(...p.push(Buffer.from("X-Pad: aaaaaaaa\r\n")));
    expect(evs.map((e) => e.type)).toEqual(["error"]);
    expect(p.failed).toBe(true);
  });

  it("fails fatally on binary garbage at a message boundary", () => {
    const evs = new RtspStreamParser().push(Buffer.from([0x80, 0x60, 0, 1]));
    expect(evs[0]).toMatchObject({ type: "error", fatal: true });
  });

  it("waits for a truncated interleaved frame", () => {
    const p = new RtspStreamParser();
    const f = interleavedFrame(0, Buffer.alloc(1000, 7));
    expect(p.push(f.subarray(0, 500))).toEqual([]);
    expect(p.buffered).toBe(500);
    const evs = p.push(f.subarray(500));
    expect(evs).toHaveLength(1);
    expect((evs[0] as { data: Buffer }).data.length).toBe(1000);
  });

  it("never throws and only ever reports BadInputError (fuzz)", () => {
    const pieces = [
      "RTSP/1.0 200 OK\r\n",
      "CSeq: 1\r\n",
      "Content-Length: 4\r\n",
      "Content-Length: x\r\n",
      "\r\n",
      "\n",
      "$",
      "abcd",
      "OPTIONS * RTSP/1.0\r\n",
      " folded\r\n",
      ":\r\n",
    ].map((s) => Buffer.from(s));
    const chunk = fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
      fc.constantFrom(...pieces),
    );
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 30 }), (chunks) => {
        const p = new RtspStreamParser({ maxHeaderBytes: 512, maxBodyBytes: 512 });
        for (const c of chunks)
          for (const e of p.push(c)) {
            if (e.type === "error") expect(e.error).toBeInstanceOf(BadInputError);
            if (e.type === "interleaved") expect(e.data.length).toBeLessThanOrEqual(65535);
          }
        expect(p.buffered).toBeLessThanOrEqual(512 + 512 + 65539 + 64);
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips serialized messages (property)", () => {
    const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/);
    const value = fc.stringMatching(/^[ -~]{0,40}$/).map((s) => s.trim());
    fc.assert(
      fc.property(
        fc.array(fc.tuple(token, value), { maxLength: 8 }),
        fc.uint8Array({ maxLength: 200 }),
        fc.integer({ min: 100, max: 999 }),
        (hs, body, status) => {
          const filtered = hs.filter(([k]) => k.toLowerCase() !== "content-length");
          const msg = { status, reason: "Some Reason", headers: new RtspHeaders(filtered), body: Buffer.from(body) };
          const evs = new RtspStreamParser().push(serializeResponse(msg));
          expect(evs).toHaveLength(1);
          const r = evs[0] as Extract<RtspStreamEvent, { type: "response" }>;
          expect(r.message.status).toBe(status);
          expect(r.message.headers.entries().filter(([k]) => k !== "Content-Length")).toEqual(filtered);
          expect(r.message.body.equals(Buffer.from(body))).toBe(true);
        },
      ),
    );
  });
});

describe("captured GStreamer sessions (test/fixtures/rtsp, see capture.ts)", () => {
  const fixture = (name: string) => readFileSync(new URL(`../fixtures/rtsp/${name}`, import.meta.url));

  it("parses the server's byte stream: answers then interleaved RTP/RTCP, whatever the split", () => {
    const bytes = fixture("gst-tcp-digest.bin");
    const whole = new RtspStreamParser().push(bytes);
    const responses = whole.filter((e) => e.type === "response");
    expect(responses.map((e) => (e as { message: { status: number } }).message.status)).toEqual([200, 401, 200, 200, 200, 200, 200]);
    const frames = whole.filter((e) => e.type === "interleaved") as { channel: number; data: Buffer }[];
    expect(frames.length).toBeGreaterThanOrEqual(40);
    expect(new Set(frames.map((f) => f.channel))).toEqual(new Set([0, 2]));
    expect(frames.every((f) => f.data[0]! >> 6 === 2)).toBe(true);
    expect(whole.some((e) => e.type === "error")).toBe(false);
    const ref = plain(whole);
    // every boundary through the RTSP answers and the first frames, then strides
    for (let i = 1; i < bytes.length; i += i < 2500 ? 1 : 97) {
      const p = new RtspStreamParser();
      expect(plain([...p.push(bytes.subarray(0, i)), ...p.push(bytes.subarray(i))]), `split at ${i}`).toEqual(ref);
    }
  });

  it("parses the client's requests as a server would", () => {
    const evs = new RtspStreamParser().push(fixture("gst-tcp-digest.requests.txt"));
    expect(evs.map((e) => (e.type === "request" ? e.message.method : e.type))).toEqual([
      "OPTIONS", "DESCRIBE", "DESCRIBE", "SETUP", "SETUP", "PLAY", "TEARDOWN",
    ]);
    const setup = evs[3] as Extract<RtspStreamEvent, { type: "request" }>;
    expect(setup.message.headers.get("transport")).toBe("RTP/AVP/TCP;unicast;interleaved=0-1");
    expect(setup.message.headers.get("authorization")).toMatch(/^Digest username="user", realm="GStreamer RTSP Server"/);
  });
});
