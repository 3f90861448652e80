/**
 * The Auto-quality scenario over a shaped link, shared by the end-to-end test
 * (test/e2e/streams-netem.test.ts) and the benchmark (test/bench/streams.ts):
 *
 * 1. the gateway (test/peers/netns-gateway.ts: one camera, main 1280×720 and sub 640×360)
 *    in one namespace, Chromium in the other, 150 ms each way;
 * 2. the camera opened large in the product page (`/#camera=gate`, Auto): main stream;
 * 3. the link to the browser limited to 1 Mbit/s with 5 % loss: time until the gateway
 *    switched the viewer to the substream and until the page decodes 640-wide frames;
 * 4. the limit held `holdLimitedMs`, then the rate limit lifted (loss and delay stay): time
 *    until the viewer is back on main, at the gateway and in the page;
 * 5. throughout, the page's framesDecoded sampled every 50 ms: the longest time without a
 *    new frame (freeze), and the recorders' session counts.
 */
import type { Page } from "puppeteer-core";
import { inboundStats, launchChromium, waitForDecodedFrames } from "./chromium.ts";
import { createNetnsLink, startNetnsGateway } from "./netns.ts";

export interface NetemResult {
  startWidth: number;
  /** Seconds from the limit to the gateway's switch / the page's first 640-wide frame. */
  downServerS: number;
  downPageS: number;
  widthLimited: number;
  /** Seconds from lifting the limit to the switch back / the page's first 1280-wide frame. */
  upServerS: number;
  upPageS: number;
  /** Longest freeze from the limit on to the end, ms: the larger of the two below. */
  freezeMaxMs: number;
  /** Longest freeze by Chromium's freeze counters (see `freezeSince`), ms. */
  freezeCountersMs: number;
  /** Longest run of samples without a newly decoded frame, ms. */
  freezeDecodedMs: number;
  /** Freezes Chromium counted from the limit on. */
  freezes: number;
  /** The gateway's probes of the link before stepping up (made, failed). */
  probes: { made: number; failed: number; bytes: number; last: { deliveredBps: number; sentBps: number; targetBps: number } } | undefined;
  /** When that freeze began, seconds after the limit. */
  freezeAtS: number;
  /** Steps between streams the gateway made while limited (1 = no oscillation). */
  switchesWhileLimited: number;
  maxSessions: { main: number; sub: number };
  mainReleased: boolean;
  /** The gateway's view about every half second: source, quality, estimate, round trip, loss, upstream rates. */
  trace: string[];
}

interface GwStatus {
  rates: Record<string, number>;
  mainSessions: number;
  subSessions: number;
  viewers: {
    sourceId: string;
    quality: string;
    estimateBps: number | undefined;
    deliveredBps?: number;
    queueDelayMs?: number;
    rttMs: number | undefined;
    fractionLost: number | undefined;
    bytesOut: number;
    retransmitBytes: number;
    plis: number;
    keyframesFromCache: number;
    probes?: { made: number; failed: number; bytes: number; last: { deliveredBps: number; sentBps: number; targetBps: number } };
    drops?: Record<string, number>;
    queued?: number;
  }[];
}

/**
 * Samples the page's inbound video every 50 ms: [page time, framesDecoded, frameWidth,
 * receiver key, freezeCount, totalFreezesDuration (s)] (Chromium's own freeze counters: a
 * freeze is a gap between two rendered frames over max(3 × the mean, mean + 150 ms)).
 */
const SAMPLER = `(() => {
  const w = window;
  w.__ghSamples = [];
  w.__ghSampler = setInterval(async () => {
    let best = null;
    for (const pc of w.__gh.pcs()) {
      for (const r of pc.getReceivers()) {
        if (!r.track || r.track.kind !== "video") continue;
        for (const s of (await r.getStats()).values()) {
          if (s.type === "inbound-rtp" && s.kind === "video" && (!best || (s.framesDecoded || 0) > best.s.framesDecoded)) best = { s, key: pc.__ghId + ":" + s.ssrc };
        }
      }
    }
    if (best) w.__ghSamples.push([performance.now(), best.s.framesDecoded || 0, best.s.frameWidth || 0, best.key, best.s.freezeCount || 0, best.s.totalFreezesDuration || 0]);
  }, 50);
})()`;

export async function runNetemScenario(o: { holdLimitedMs?: number; timeoutMs?: number } = {}): Promise<NetemResult> {
  await using link = await createNetnsLink();
  await link.shape("down", { delayMs: 150 });
  await link.shape("up", { delayMs: 150 });
  await using gw = await startNetnsGateway(link);
  const url = gw.url;
  const status = () => gw.status<GwStatus>();
  const wrapper = await link.wrapper("client", "/usr/bin/chromium");
  await using chromium = await launchChromium({ executablePath: wrapper, pipe: true });
  const page = await chromium.newPage(`${url}/#camera=gate`);
  await waitForDecodedFrames(page, 20, 60_000);
  const width = async () => (await inboundStats(page, "video"))?.frameWidth ?? 0;
  await until(async () => (await width()) === 1280, "the main stream in the page", 30_000);
  const startWidth = await width();
  await page.evaluate(SAMPLER);
  const maxSessions = { main: 0, sub: 0 };
  let mainReleased = false;
  const watch = async () => {
    const s = await status();
    maxSessions.main = Math.max(maxSessions.main, s.mainSessions);
    maxSessions.sub = Math.max(maxSessions.sub, s.subSessions);
    if (s.mainSessions === 0 && s.subSessions === 1) mainReleased = true;
    return s;
  };
  const t0 = performance.now();
  const trace: string[] = [];
  let sentBefore = { at: performance.now(), bytes: 0, rtx: 0 };
  let lastProbes: NetemResult["probes"];
  const source = async () => {
    const s = await watch();
    const v = s.viewers[0];
    // What the gateway sent this viewer since the previous line (retransmissions apart), kbit/s.
    const now = performance.now();
    const sent = (b: number, a: number) => Math.round(((b - a) * 8) / (now - sentBefore.at));
    const out = v ? `sent=${sent(v.bytesOut, sentBefore.bytes)} rtx=${sent(v.retransmitBytes, sentBefore.rtx)} pli=${v.plis} replays=${v.keyframesFromCache} probes=${v.probes?.made ?? 0}/${v.probes?.failed ?? 0}${probeLast(v.probes?.last)} queued=${v.queued} drops=${Object.entries(v.drops ?? {}).filter(([, n]) => n > 0).map(([k, n]) => `${k}:${n}`).join(",")}` : "";
    sentBefore = { at: now, bytes: v?.bytesOut ?? 0, rtx: v?.retransmitBytes ?? 0 };
    lastProbes = v?.probes ?? lastProbes;
    trace.push(
      `${Math.round((now - t0) / 100) / 10}s ${v?.sourceId} ${v?.quality} est=${v?.estimateBps} dlv=${v?.deliveredBps} q=${v?.queueDelayMs} rtt=${Math.round(v?.rttMs ?? -1)} loss=${v?.fractionLost} ${out} kbit/s=${JSON.stringify(s.rates)}`,
    );
    return v?.sourceId;
  };

  await source(); // the unlimited link, for the trace
  // Limit the link to the browser.
  await link.shape("down", { rateKbit: 1000, lossPct: 5, delayMs: 150 });
  const limitedAt = performance.now();
  trace.push(`limit at ${Date.now() % 1000000}`);
  const downServerS = await timeUntil(async () => (await source()) === "gate:sub", limitedAt, "the gateway to switch to the substream", o.timeoutMs ?? 30_000);
  const downPageS = await timeUntil(
    async () => {
      await source();
      return (await width()) === 640;
    },
    limitedAt,
    "640-wide frames in the page",
    o.timeoutMs ?? 30_000,
  );
  // Held limited: it must stay down (count the switches).
  let switchesWhileLimited = 1;
  let last = "gate:sub";
  const holdEnd = performance.now() + (o.holdLimitedMs ?? 10_000);
  while (performance.now() < holdEnd) {
    const s = await source();
    if (s !== undefined && s !== last) {
      switchesWhileLimited++;
      last = s;
    }
    await sleep(250);
  }
  const widthLimited = await width();
  // Lift the rate limit (the loss and the delay stay).
  await link.shape("down", { lossPct: 5, delayMs: 150 });
  const liftedAt = performance.now();
  trace.push(`lift at ${Date.now() % 1000000}`);
  const upServerS = await timeUntil(async () => (await source()) === "gate", liftedAt, "the gateway to switch back to main", o.timeoutMs ?? 40_000).catch(
    (err: unknown) => {
      throw new Error(`${(err as Error).message}; trace:\n${trace.join("\n")}`);
    },
  );
  const upPageS = await timeUntil(
    async () => {
      await source();
      return (await width()) === 1280;
    },
    liftedAt,
    "1280-wide frames in the page",
    o.timeoutMs ?? 40_000,
  );
  // Thirty frames of the main stream decoded after the switch back: its freeze, if any, is over and counted.
  const framesUp = (await inboundStats(page, "video"))?.framesDecoded ?? 0;
  await until(async () => ((await inboundStats(page, "video"))?.framesDecoded ?? 0) >= framesUp + 30, "30 frames of the main stream", 30_000);
  const f = await freezeSince(page);
  const pageNow = (await page.evaluate("performance.now()")) as number;
  const freezeAtS = Math.round((f.at - (pageNow - (performance.now() - limitedAt))) / 100) / 10;
  const freezeMaxMs = Math.max(f.counters, f.decoded);
  return {
    startWidth,
    downServerS,
    downPageS,
    widthLimited,
    upServerS,
    upPageS,
    freezeMaxMs,
    freezeCountersMs: f.counters,
    freezeDecodedMs: f.decoded,
    freezes: f.freezes,
    freezeAtS,
    switchesWhileLimited,
    maxSessions,
    mainReleased,
    probes: lastProbes,
    trace,
  };
}

/**
 * The longest freeze in the page's samples since the sampler started, two ways:
 * - `counters`: Chromium's own freeze counters, the largest growth of totalFreezesDuration
 *   between two samples in which freezeCount grew (one freeze's duration, or the sum of the
 *   freezes ended within 50 ms: never less than the longest); immune to the page's timers
 *   running late under load;
 * - `decoded`: the longest run of samples in which framesDecoded did not grow, from the last
 *   sample that saw it grow to the last that did not (a lower bound within one sampling
 *   interval; a sampler that itself stalls reads no freeze from it, the counters do).
 * `at`: when the longest (by the counters, else by framesDecoded) began, page time.
 */
async function freezeSince(page: Page): Promise<{ counters: number; decoded: number; freezes: number; at: number }> {
  const samples = (await page.evaluate("window.__ghSamples")) as [number, number, number, string, number, number][];
  let decoded = 0;
  let decodedAt = 0;
  let counters = 0;
  let countersAt = 0;
  let prev = samples[0];
  let lastProgressAt = prev?.[0] ?? 0;
  for (const cur of samples.slice(1)) {
    if (!prev) break;
    const progressed = cur[3] !== prev[3] || cur[1] > prev[1];
    if (progressed) lastProgressAt = cur[0];
    else if (cur[0] - lastProgressAt > decoded) {
      decoded = cur[0] - lastProgressAt;
      decodedAt = lastProgressAt;
    }
    if (cur[3] === prev[3] && cur[4] > prev[4]) {
      const ms = (cur[5] - prev[5]) * 1000;
      if (ms > counters) {
        counters = ms;
        countersAt = cur[0] - ms;
      }
    }
    prev = cur;
  }
  const first = samples[0];
  const last = samples.at(-1);
  const freezes = first && last && first[3] === last[3] ? last[4] - first[4] : 0;
  return { counters: Math.round(counters), decoded: Math.round(decoded), freezes, at: counters > 0 ? countersAt : decodedAt };
}

/** The last probe judged: delivered/sent/target, kbit/s. */
function probeLast(l: { deliveredBps: number; sentBps: number; targetBps: number } | undefined): string {
  return l && l.targetBps > 0 ? `@${[l.deliveredBps, l.sentBps, l.targetBps].map((x) => Math.round(x / 1000)).join("/")}` : "";
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Seconds from `from` until `check` holds (polled every 100 ms). */
async function timeUntil(check: () => Promise<boolean>, from: number, what: string, timeoutMs: number): Promise<number> {
  await until(check, what, timeoutMs);
  return Math.round((performance.now() - from) / 100) / 10;
}
