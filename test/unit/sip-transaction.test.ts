import { beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../config/log.ts";
import { ManualClock } from "../../gateway/sip/clock.ts";
import type { Endpoint } from "../../gateway/sip/endpoint.ts";
import { makeResponse, parseMessage, SipHeaders, type SipMessage, type SipRequest, type SipResponse } from "../../gateway/sip/message.ts";
import { DEFAULT_TIMERS, TransactionLayer, type ServerTransaction } from "../../gateway/sip/transaction.ts";

const UDP: Endpoint = { transport: "udp", address: "10.0.0.7", port: 5062 };
const TCP: Endpoint = { transport: "tcp", address: "10.0.0.7", port: 40000, flow: 3 };

function request(method: string, opts: { branch?: string; via?: string; cseq?: number; toTag?: string } = {}): SipRequest {
  const h = new SipHeaders();
  h.append("Via", opts.via ?? `SIP/2.0/UDP 10.0.0.7:5062;branch=${opts.branch ?? "z9hG4bKabc"}`);
  h.append("From", "<sip:door1@gatehouse>;tag=f1");
  h.append("To", `<sip:gw@gatehouse>${opts.toTag ? `;tag=${opts.toTag}` : ""}`);
  h.append("Call-ID", "call-1");
  h.append("CSeq", `${opts.cseq ?? 1} ${method === "ACK" ? "INVITE" : method === "CANCEL" ? "CANCEL" : method}`);
  h.append("Max-Forwards", "70");
  if (method === "ACK") h.set("CSeq", `${opts.cseq ?? 1} ACK`);
  return { kind: "request", method, uri: "sip:gw@gatehouse", headers: h, body: Buffer.alloc(0) };
}

interface Sent {
  at: number;
  msg: SipMessage;
  to: Endpoint;
}

describe("transaction layer timers (RFC 3261 §17, injected clock)", () => {
  let clock: ManualClock;
  let sent: Sent[];
  let requests: { req: SipRequest; tx: ServerTransaction | undefined }[];
  let layer: TransactionLayer;
  let failSends = false;

  beforeEach(() => {
    clock = new ManualClock();
    sent = [];
    requests = [];
    failSends = false;
    layer = new TransactionLayer(
      {
        clock,
        timers: DEFAULT_TIMERS,
        log: silentLogger,
        send: (data, to, onError) => {
          if (failSends) {
            queueMicrotask(() => onError?.(new Error("ECONNREFUSED")));
            return;
          }
          const r = parseMessage(data);
          if (r.kind !== "request" && r.kind !== "response") throw new Error(`unparseable output: ${r.kind}`);
          sent.push({ at: clock.now(), msg: r.message, to });
        },
      },
      { onRequest: (req, tx) => requests.push({ req, tx }) },
    );
  });

  const statuses = (): (number | string)[] => sent.map((s) => (s.msg.kind === "response" ? s.msg.status : s.msg.method));

  it("non-INVITE client: Timer E doubles from T1 to T2, Timer F gives a 408 at 64·T1", () => {
    const got: SipResponse[] = [];
    layer.request(request("OPTIONS", { branch: "z9hG4bKc1" }), UDP, (res, synthetic) => {
      if (synthetic) got.push(res);
    });
    clock.advance(40_000);
    // Sent at 0, then 500, 1500, 3500, 7500, 11500, … every 4 s until 32 s.
    expect(sent.map((s) => s.at).slice(0, 6)).toEqual([0, 500, 1500, 3500, 7500, 11500]);
    expect(sent.at(-1)!.at).toBeLessThan(32_000);
    expect(got.map((r) => r.status)).toEqual([408]);
    expect(layer.size.client).toBe(0);
    expect(clock.timers).toBe(0);
  });

  it("non-INVITE client: a provisional switches to T2; the final response stops it; K absorbs repeats", () => {
    const got: number[] = [];
    layer.request(request("OPTIONS", { branch: "z9hG4bKc2" }), UDP, (res) => got.push(res.status));
    const req = sent[0]!.msg as SipRequest;
    clock.advance(100);
    layer.receive(makeResponse(req, 100), UDP);
    clock.advance(4000);
    expect(sent.filter((s) => s.at > 100).map((s) => s.at)).toEqual([4100]);
    layer.receive(makeResponse(req, 200), UDP);
    layer.receive(makeResponse(req, 200), UDP); // retransmission: absorbed in Completed
    expect(got).toEqual([100, 200]);
    clock.advance(DEFAULT_TIMERS.T4);
    expect(layer.size.client).toBe(0);
  });

  it("INVITE client: Timer A doubles without cap, Timer B times out; over TCP nothing is retransmitted", () => {
    const got: number[] = [];
    layer.request(request("INVITE", { branch: "z9hG4bKc3" }), UDP, (res) => got.push(res.status));
    clock.advance(33_000);
    expect(sent.map((s) => s.at)).toEqual([0, 500, 1500, 3500, 7500, 15500, 31500]);
    expect(got).toEqual([408]);
    sent = [];
    layer.request(request("INVITE", { branch: "z9hG4bKc4" }), TCP, () => {});
    clock.advance(10_000);
    expect(sent).toHaveLength(1);
  });

  it("INVITE client: a non-2xx final is ACKed in the transaction, and again on each retransmission (Timer D)", () => {
    const got: number[] = [];
    layer.request(request("INVITE", { branch: "z9hG4bKc5" }), UDP, (res) => got.push(res.status));
    const inv = sent[0]!.msg as SipRequest;
    const busy = makeResponse(inv, 486, { toTag: "t9" });
    layer.receive(busy, UDP);
    layer.receive(busy, UDP);
    const acks = sent.filter((s) => s.msg.kind === "request" && s.msg.method === "ACK").map((s) => s.msg as SipRequest);
    expect(acks).toHaveLength(2);
    expect(acks[0]!.headers.get("via")).toContain("branch=z9hG4bKc5");
    expect(acks[0]!.headers.get("to")).toContain("tag=t9");
    expect(acks[0]!.headers.get("cseq")).toBe("1 ACK");
    expect(got).toEqual([486]);
    clock.advance(32_000);
    expect(layer.size.client).toBe(0);
  });

  it("INVITE client: 2xx retransmissions reach the TU while Accepted (RFC 6026 Timer M)", () => {
    const got: number[] = [];
    layer.request(request("INVITE", { branch: "z9hG4bKc6" }), UDP, (res) => got.push(res.status));
    const ok = makeResponse(sent[0]!.msg as SipRequest, 200, { toTag: "t1" });
    layer.receive(ok, UDP);
    layer.receive(ok, UDP);
    expect(got).toEqual([200, 200]);
    clock.advance(64 * DEFAULT_TIMERS.T1);
    expect(layer.size.client).toBe(0);
  });

  it("a transport error ends a client transaction with a synthetic 503", async () => {
    failSends = true;
    const got = new Promise<[number, boolean]>((resolve) => layer.request(request("OPTIONS", { branch: "z9hG4bKc7" }), TCP, (r, s) => resolve([r.status, s])));
    expect(await got).toEqual([503, true]);
  });

  it("INVITE server: 100 at once, provisional resent on a retransmitted INVITE", () => {
    layer.receive(request("INVITE"), UDP);
    expect(statuses()).toEqual([100]);
    const { tx } = requests[0]!;
    tx!.reply(180, { toTag: "x" });
    layer.receive(request("INVITE"), UDP);
    expect(statuses()).toEqual([100, 180, 180]);
    expect(requests).toHaveLength(1);
  });

  it("INVITE server: a non-2xx final is retransmitted by Timer G until ACK; Timer I then ends it", () => {
    layer.receive(request("INVITE"), UDP);
    const { tx } = requests[0]!;
    tx!.reply(486, { toTag: "x" });
    clock.advance(3600);
    // 486 at 0, then at 500, 1500, 3500 (T1 doubling, capped at T2).
    expect(sent.filter((s) => s.msg.kind === "response" && s.msg.status === 486).map((s) => s.at)).toEqual([0, 500, 1500, 3500]);
    layer.receive(request("ACK"), UDP);
    expect(tx!.state).toBe("confirmed");
    clock.advance(10_000);
    expect(sent.filter((s) => s.msg.kind === "response" && s.msg.status === 486)).toHaveLength(4);
    expect(tx!.state).toBe("terminated");
    expect(requests.map((r) => r.req.method)).toEqual(["INVITE"]); // the ACK was absorbed
  });

  it("INVITE server: no ACK for a non-2xx → Timer H fires onNoAck after 64·T1", () => {
    layer.receive(request("INVITE"), UDP);
    const { tx } = requests[0]!;
    let noAck = 0;
    tx!.onNoAck = () => noAck++;
    tx!.reply(480, { toTag: "x" });
    clock.advance(64 * 500 - 1);
    expect(noAck).toBe(0);
    clock.advance(1);
    expect(noAck).toBe(1);
    expect(layer.stats.timeouts).toBe(1);
  });

  it("INVITE server: the 2xx is retransmitted (T1…T2) until the dialog reports the ACK", () => {
    layer.receive(request("INVITE"), UDP);
    const { tx } = requests[0]!;
    let noAck = 0;
    tx!.onNoAck = () => noAck++;
    tx!.reply(200, { toTag: "x" });
    clock.advance(12_000);
    const oks = sent.filter((s) => s.msg.kind === "response" && s.msg.status === 200).map((s) => s.at);
    expect(oks).toEqual([0, 500, 1500, 3500, 7500, 11500]);
    // The ACK of a 2xx is a new transaction: it reaches the TU, which tells the INVITE transaction.
    layer.receive(request("ACK", { branch: "z9hG4bKack" }), UDP);
    expect(requests.at(-1)!.req.method).toBe("ACK");
    expect(requests.at(-1)!.tx).toBeUndefined();
    tx!.ackReceived();
    clock.advance(40_000);
    expect(sent.filter((s) => s.msg.kind === "response" && s.msg.status === 200)).toHaveLength(6);
    expect(noAck).toBe(0);
  });

  it("INVITE server: an unacknowledged 2xx is reported at Timer L", () => {
    layer.receive(request("INVITE"), UDP);
    const { tx } = requests[0]!;
    let noAck = 0;
    tx!.onNoAck = () => noAck++;
    tx!.reply(200, { toTag: "x" });
    clock.advance(64 * 500);
    expect(noAck).toBe(1);
  });

  it("non-INVITE server: retransmitted requests get the cached final response until Timer J", () => {
    layer.receive(request("OPTIONS"), UDP);
    layer.receive(request("OPTIONS"), UDP); // before any response: absorbed
    requests[0]!.tx!.reply(200);
    layer.receive(request("OPTIONS"), UDP);
    expect(statuses()).toEqual([200, 200]);
    expect(requests).toHaveLength(1);
    clock.advance(64 * 500);
    layer.receive(request("OPTIONS"), UDP); // after J: a new transaction
    expect(requests).toHaveLength(2);
  });

  it("stamps received/rport on the top Via and answers there (RFC 3581)", () => {
    const src: Endpoint = { transport: "udp", address: "203.0.113.9", port: 61000 };
    layer.receive(request("OPTIONS", { via: "SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKnat;rport" }), src);
    requests[0]!.tx!.reply(200);
    expect(sent[0]!.to).toMatchObject({ address: "203.0.113.9", port: 61000 });
    expect((sent[0]!.msg as SipResponse).headers.get("via")).toBe("SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKnat;rport=61000;received=203.0.113.9");
    // Without rport: the sent-by port at the received address (§18.2.2).
    layer.receive(request("OPTIONS", { via: "SIP/2.0/UDP 192.168.1.20:5070;branch=z9hG4bKnat2" }), src);
    requests[1]!.tx!.reply(200);
    expect(sent[1]!.to).toMatchObject({ address: "203.0.113.9", port: 5070 });
  });

  it("matches a CANCEL to its INVITE transaction", () => {
    layer.receive(request("INVITE", { branch: "z9hG4bKinv" }), UDP);
    layer.receive(request("CANCEL", { branch: "z9hG4bKinv" }), UDP);
    const cancel = requests[1]!;
    expect(cancel.req.method).toBe("CANCEL");
    expect(layer.findInviteFor(cancel.req)).toBe(requests[0]!.tx);
  });

  it("close() terminates everything and leaves no timers", () => {
    layer.receive(request("INVITE"), UDP);
    requests[0]!.tx!.reply(486, { toTag: "x" });
    const got: number[] = [];
    layer.request(request("OPTIONS", { branch: "z9hG4bKz" }), UDP, (r) => got.push(r.status));
    layer.close();
    expect(got).toEqual([503]);
    expect(clock.timers).toBe(0);
  });
});
