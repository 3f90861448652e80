import { RtspClient } from "./gateway/rtsp/client.ts";
import { readOnvifExtension, replayPlayHeaders } from "./gateway/playback/onvif.ts";
import { silentLogger } from "./config/log.ts";
const [url, baseS, offS, rateS, paceS] = process.argv.slice(2);
const base = Number(baseS), start = base + Number(offS) * 1000, rate = Number(rateS);
const t0 = Date.now();
const seen: string[] = [];
let n = 0, first: number | undefined, last = 0;
const c = new RtspClient({
  url: url!, transport: "tcp", requestTimeoutMs: 5000, mediaTimeoutMs: 5000, log: silentLogger, require: "onvif-replay",
  playHeaders: replayPlayHeaders({ start, rate, clientPaces: paceS === "gw", intraOnly: false, immediate: false }),
  sink: { pushRtp: (_t, p) => { const i = readOnvifExtension(p); n++; if (!i) return; if (first === undefined) { first = i.time; seen.push(`first +${Date.now()-t0}ms rec=${(i.time - start)} c=${i.cleanPoint} d=${i.discontinuity} cseq=${i.cseq}`); } last = i.time; }, pushRtcp: () => {} },
});
const s = await c.start();
console.log("play answer", s.playAnswer?.entries());
await new Promise((r) => setTimeout(r, 2000));
console.log(seen, "packets", n, "recorded advance ms", last - first!, "wall", Date.now() - t0);
// seek
const t1 = Date.now(); first = undefined;
const res = await c.control("PLAY", replayPlayHeaders({ start: start + 300000, rate, clientPaces: paceS === "gw", intraOnly: false, immediate: true }));
console.log("seek answer", res.status, Date.now() - t1, res.headers.entries());
await new Promise((r) => setTimeout(r, 1000));
console.log(seen);
const p = await c.control("PAUSE"); console.log("pause", p.status);
await c.close();
