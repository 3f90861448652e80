/**
 * SIP intercom benchmark: `benchSip() → { sip_concurrent_calls, sip_setup_ms_p95, … }`.
 *
 * sipp (one process, UDP) places N calls from an allow-listed "door" at `rate` calls/s; each
 * streams G.711 RTP (rtp_stream, 50 packets/s) for `holdS` seconds and hangs up. The gateway's
 * SIP server runs in a child process of its own (this file, forked with --sip-server-child) so
 * its CPU is measured alone; its application side answers every ring at once and echoes the
 * door's audio back (RTP both ways, as a browser would talk back).
 *
 * A call counts as good when sipp completed it, we ended it on the door's BYE, and its RTP
 * flowed both ways (≥ 90 % of the expected packets in, every one echoed out).
 * `sip_concurrent_calls` is the highest level at which every call was good and all of them
 * were up at the same time; `sip_setup_ms_p95` is sipp's INVITE → 200 OK time at that level.
 *
 *   node test/bench/sip.ts [--calls 200] [--hold 60] [--rate 50] [--quick]
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { forkChild, serve } from "./lib/child.ts";
import { CpuWindow, rssKb } from "./lib/proc.ts";
import { percentile, round } from "./lib/stats.ts";

export interface SipBenchOptions {
  /** Concurrent-call levels to try, highest first; the first fully good one is reported. Default [200, 100, 50]. */
  levels?: number[];
  /** Seconds each call is held. Default 60 (the target). */
  holdS?: number;
  /** New calls per second. Default 50. */
  rate?: number;
  /** Smoke run: levels [50], 5 s hold. */
  quick?: boolean;
  log?: (msg: string) => void;
}

export interface SipBenchResult extends Record<string, unknown> {
  sip_concurrent_calls: number;
  sip_setup_ms_p95: number;
}

interface ChildReady {
  udpPort: number;
}

interface CallSummary {
  reason: string;
  packetsIn: number;
  packetsOut: number;
  durationMs: number;
}

interface ChildStats {
  peakAnswered: number;
  calls: CallSummary[];
  refused: number;
  rtpPortsInUse: number;
}

const FIXTURE = fileURLToPath(new URL("../fixtures/sip/call-rtp.xml", import.meta.url));

export async function benchSip(opts: SipBenchOptions = {}): Promise<SipBenchResult> {
  const { runSipp, describeRun } = await import("../peers/sipp.ts");
  const { linearToUlaw } = await import("../../gateway/sip/rtp.ts");
  const log = opts.log ?? ((m: string) => process.stderr.write(`[sip bench] ${m}\n`));
  const levels = opts.levels ?? (opts.quick ? [50] : [200, 100, 50]);
  const holdS = opts.holdS ?? (opts.quick ? 5 : 60);
  const rate = opts.rate ?? 50;
  const tone = Buffer.alloc(8000);
  for (let i = 0; i < tone.length; i++) tone[i] = linearToUlaw(8000 * Math.sin((2 * Math.PI * 440 * i) / 8000));

  const result: SipBenchResult = { sip_concurrent_calls: 0, sip_setup_ms_p95: Number.NaN, sip_hold_s: holdS, sip_call_rate_per_s: rate };
  const attempts: Record<string, unknown>[] = [];
  for (const n of levels) {
    const child = await forkChild<ChildReady>(fileURLToPath(import.meta.url), ["--sip-server-child", String(n)]);
    try {
      const rampS = n / rate;
      log(`level ${n}: ${n} calls at ${rate}/s, held ${holdS} s`);
      const cpu = new CpuWindow({ gateway: child.pid });
      const run = await runSipp({
        scenario: FIXTURE,
        target: `127.0.0.1:${child.ready.udpPort}`,
        keys: { user: "bench" },
        calls: n,
        limit: n,
        rate,
        files: { "door.ulaw": tone },
        traceMessages: false,
        traceRtt: true,
        timeoutMs: Math.ceil((rampS + holdS + 30) * 1000),
        extraArgs: ["-d", String(holdS * 1000), "-max_recv_loops", "5000", "-rtp_buffsize", "262144"],
      });
      const window = cpu.end();
      const rss = rssKb(child.pid);
      // Let the last BYEs settle in the child before reading its summary.
      await new Promise((r) => setTimeout(r, 500));
      const st = await child.call<ChildStats>("stats");
      const expectedIn = (holdS * 1000) / 20;
      const good = st.calls.filter((c) => c.reason === "remote-bye" && c.packetsIn >= 0.9 * expectedIn && c.packetsOut >= c.packetsIn);
      const sippOk = run.code === 0 && Number(run.stats["FailedCall(C)"] ?? "1") === 0 && Number(run.stats["SuccessfulCall(C)"] ?? "0") === n;
      const ok = sippOk && good.length === n && st.peakAnswered >= n;
      const setup = run.rtt;
      const attempt = {
        level: n,
        ok,
        sipp_exit: run.code,
        sipp_successful: Number(run.stats["SuccessfulCall(C)"] ?? 0),
        sipp_failed: Number(run.stats["FailedCall(C)"] ?? 0),
        calls_good: good.length,
        peak_answered: st.peakAnswered,
        setup_ms_p50: round(percentile(setup, 50), 2),
        setup_ms_p95: round(percentile(setup, 95), 2),
        setup_ms_max: round(Math.max(...setup), 2),
        rtp_in_per_call_min: Math.min(...st.calls.map((c) => c.packetsIn)),
        rtp_in_expected_per_call: expectedIn,
        rtp_packets_in: st.calls.reduce((a, c) => a + c.packetsIn, 0),
        rtp_packets_out: st.calls.reduce((a, c) => a + c.packetsOut, 0),
        gateway_cpu_cores: round(window.cores.gateway ?? Number.NaN, 3),
        gateway_rss_kb: rss,
      };
      attempts.push(attempt);
      log(`level ${n}: ${JSON.stringify(attempt)}`);
      if (!ok) log(`level ${n} not clean:\n${describeRun(run).slice(0, 3000)}`);
      if (ok) {
        result.sip_concurrent_calls = n;
        result.sip_setup_ms_p95 = attempt.setup_ms_p95;
        result.sip_setup_ms_p50 = attempt.setup_ms_p50;
        result.sip_rtp_packets_in = attempt.rtp_packets_in;
        result.sip_rtp_packets_out = attempt.rtp_packets_out;
        result.sip_gateway_cpu_cores = attempt.gateway_cpu_cores;
        result.sip_gateway_rss_kb = rss;
        break;
      }
    } finally {
      await child.close();
    }
  }
  result.sip_attempts = attempts;
  result.sip_method =
    "sipp uac over UDP from an allow-listed source, PCMU rtp_stream 50 pkt/s per call, gateway SIP server in its own process answering at once and echoing the RTP; setup = sipp INVITE→200 OK";
  return result;
}

/** Child mode: the gateway's SIP server with an auto-answering, echoing application. */
async function child(level: number): Promise<void> {
  const { startSipServer } = await import("../../gateway/sip/server.ts");
  const { parseConfig } = await import("../../config/load.ts");
  const { silentLogger } = await import("../../config/log.ts");
  const base = 20000 + 2 * Math.floor(Math.random() * 4000);
  const config = parseConfig({
    sip: {
      enabled: true,
      udp: { port: 0 },
      tcp: { enabled: false },
      keepAliveSeconds: 0,
      maxCalls: Math.max(500, level * 2),
      rtpPortRange: [base, base + Math.max(999, level * 4)],
      ringTimeoutSeconds: 30,
      devices: [{ id: "bench", username: "bench", allow: ["127.0.0.1"] }],
    },
  }).sip;
  const srv = await startSipServer({ config, log: silentLogger });
  const calls: CallSummary[] = [];
  let answered = 0;
  let peakAnswered = 0;
  srv.intercom.events.on("ring", (r) => {
    const sink = {
      call: undefined as ReturnType<typeof srv.intercom.answer> | undefined,
      setTracks() {},
      pushRtp(_t: number, p: Buffer) {
        this.call?.sendRtp(p);
      },
      pushRtcp() {},
      upstreamDown() {},
    };
    const call = srv.intercom.answer(r.callId, { id: "bench" }, { sink });
    sink.call = call;
    answered++;
    peakAnswered = Math.max(peakAnswered, answered);
    const started = performance.now();
    call.events.on("ended", (e) => {
      answered--;
      const m = call.mediaStats();
      calls.push({ reason: e.reason, packetsIn: m.packetsIn, packetsOut: m.packetsOut - m.generatedOut, durationMs: performance.now() - started });
    });
  });
  serve(
    {
      stats: () => ({ peakAnswered, calls, refused: srv.stats().refused.unknownCaller, rtpPortsInUse: srv.stats().rtpPortsInUse }) satisfies ChildStats,
      close: () => srv.close(),
    },
    { udpPort: srv.ports.udp! } satisfies ChildReady,
  );
}

const argv = process.argv.slice(2);
if (argv[0] === "--sip-server-child") {
  await child(Number(argv[1] ?? 200));
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { calls: { type: "string" }, hold: { type: "string" }, rate: { type: "string" }, quick: { type: "boolean", default: false } },
  });
  const r = await benchSip({
    ...(values.calls ? { levels: values.calls.split(",").map(Number) } : {}),
    ...(values.hold ? { holdS: Number(values.hold) } : {}),
    ...(values.rate ? { rate: Number(values.rate) } : {}),
    quick: values.quick === true,
  });
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
