/**
 * RFC 4475 torture messages (test/fixtures/sip/rfc4475, transcribed from the RFC; its
 * <repeat> notation expanded) through the parser and the whole server on a fake network:
 * every message is parsed or answered with the right 4xx/5xx, and nothing ever throws.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { ManualClock } from "../../gateway/sip/clock.ts";
import type { Endpoint } from "../../gateway/sip/endpoint.ts";
import { contactsOf, cseqOf, parseMessage, parseNameAddr, tagOf, toOf, topVia, type SipResponse } from "../../gateway/sip/message.ts";
import { extractSdp } from "../../gateway/sip/sdp.ts";
import { startSipServer, type SipServer } from "../../gateway/sip/server.ts";
import { parseSipUri } from "../../gateway/sip/uri.ts";
import { FakeNet, testConfig } from "./sip-helpers.ts";

const dir = new URL("../fixtures/sip/rfc4475/", import.meta.url);
interface Expectation {
  section: string;
  kind: "request" | "response" | "reject" | "invalid";
  status?: number;
  statusUnknownCaller?: number;
  method?: string;
  vias?: number;
  topBranch?: string;
  maxForwards?: number;
  cseq?: number;
  toTag?: string;
  fromTag?: string;
  fromDisplay?: string;
  contactQ?: string;
  ruriUser?: string;
  toUser?: string;
  fromUser?: string;
  contacts?: number;
  bodyLength?: number;
  multipartSdp?: boolean;
  reason?: string;
  unsupported?: string;
}
const index = JSON.parse(readFileSync(new URL("index.json", dir), "utf8")) as Record<string, Expectation>;
const fixture = (name: string): Buffer => readFileSync(new URL(`${name}.dat`, dir));
/** What our server answers from an unknown source: INVITE 403 (unknown caller), REGISTER 401 (challenge). */
const expectedStatus = (e: Expectation): number | undefined =>
  e.statusUnknownCaller ?? e.status ?? (e.method === "INVITE" ? 403 : e.method === "REGISTER" ? 401 : undefined);

describe("RFC 4475 torture messages: parser", () => {
  for (const [name, e] of Object.entries(index)) {
    it(`${name} (§${e.section}) → ${e.kind}${e.status ? ` ${e.status}` : ""}`, () => {
      const r = parseMessage(fixture(name), { datagram: true });
      if (e.kind === "reject" && r.kind === "reject") {
        expect(r.status).toBe(e.status);
        return;
      }
      expect(r.kind).toBe(e.kind);
      if (r.kind === "request") {
        const m = r.message;
        expect(m.method).toBe(e.method);
        if (e.vias !== undefined) expect(m.headers.getList("via")).toHaveLength(e.vias);
        if (e.topBranch !== undefined) expect(topVia(m)!.branch).toBe(e.topBranch);
        if (e.maxForwards !== undefined) expect(Number(m.headers.get("max-forwards"))).toBe(e.maxForwards);
        if (e.cseq !== undefined) expect(cseqOf(m).seq).toBe(e.cseq);
        if (e.toTag !== undefined) expect(tagOf(toOf(m))).toBe(e.toTag);
        if (e.fromTag !== undefined) expect(tagOf(parseNameAddr(m.headers.get("from")!))).toBe(e.fromTag);
        if (e.fromDisplay !== undefined) expect(parseNameAddr(m.headers.get("from")!)!.display).toBe(e.fromDisplay);
        if (e.contactQ !== undefined) expect(contactsOf(m)![0]!.params.get("q")).toBe(e.contactQ);
        if (e.ruriUser !== undefined) expect(parseSipUri(m.uri)!.user).toBe(e.ruriUser);
        if (e.toUser !== undefined) expect(parseSipUri(toOf(m)!.uri)!.user).toBe(e.toUser);
        if (e.fromUser !== undefined) expect(parseSipUri(parseNameAddr(m.headers.get("from")!)!.uri)!.user).toBe(e.fromUser);
        if (e.contacts !== undefined) expect(contactsOf(m)).toHaveLength(e.contacts);
        if (e.bodyLength !== undefined) expect(m.body.length).toBe(e.bodyLength);
        if (e.multipartSdp) {
          const ct = m.headers.get("content-type")!;
          expect(extractSdp("multipart/mixed", /boundary=([^;]+)/.exec(ct)![1], m.body)).toMatch(/^v=0\r\n/);
        }
      }
      if (r.kind === "response") {
        expect(r.message.status).toBe(e.status);
        if (e.reason !== undefined) expect(r.message.reason).toBe(e.reason);
      }
    });
  }
});

describe("RFC 4475 torture messages: whole server", () => {
  const net = new FakeNet();
  let server: SipServer;
  const src: Endpoint = { transport: "udp", address: "127.0.0.1", port: 5099 };
  beforeAll(async () => {
    server = await startSipServer({
      config: testConfig({ devices: [{ id: "door", username: "door", password: "door-secret" }] }),
      log: silentLogger,
      clock: new ManualClock(),
      transport: net.factory,
    });
  });
  afterAll(() => server.close());

  for (const [name, e] of Object.entries(index)) {
    it(`${name}: ${e.kind === "response" || e.kind === "invalid" ? "no answer" : `answered ${expectedStatus(e)}`}`, () => {
      const before = net.sent.length;
      net.deliver(fixture(name), src);
      const answers = net.sent.slice(before).filter((s) => s.msg.kind === "response" && s.msg.status >= 200).map((s) => s.msg as SipResponse);
      if (e.kind === "response" || e.kind === "invalid") {
        expect(answers).toHaveLength(0);
        return;
      }
      const expected = expectedStatus(e);
      expect(answers.map((a) => a.status)).toEqual([expected]);
      if (e.unsupported) expect(answers[0]!.headers.get("unsupported")).toBe(e.unsupported);
      // Responses go where RFC 3261 §18.2.2 says: received address, rport/sent-by port.
      expect(net.sent.at(-1)!.to.address).toBe("127.0.0.1");
    });
  }

  it("never throws on mutated torture messages and keeps answering afterwards", () => {
    const names = Object.keys(index);
    fc.assert(
      fc.property(
        fc.constantFrom(...names),
        fc.array(fc.tuple(fc.nat(4000), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        fc.nat(5000),
        (name, flips, cut) => {
          const b = Buffer.from(fixture(name));
          for (const [i, v] of flips) if (i < b.length) b[i] = v;
          net.deliver(b.subarray(0, Math.max(1, Math.min(b.length, cut))), src);
        },
      ),
      { numRuns: 1500 },
    );
    const before = net.sent.length;
    net.deliver(fixture("zeromf"), { ...src, port: 5098 });
    expect(net.sent.slice(before).some((s) => s.msg.kind === "response" && s.msg.status === 200)).toBe(true);
  });
});
