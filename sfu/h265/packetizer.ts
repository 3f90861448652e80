/**
 * RFC 7798 packetization (no DONL): NAL units → RTP payloads no larger than `maxPayload`.
 * A NAL that fits goes alone (§4.4.1); runs of small NALs that fit together (parameter
 * sets, SEI) share an aggregation packet (§4.4.2); a large NAL is cut into fragmentation
 * units (§4.4.3) so every packet fits the path MTU.
 */
import { H265Type } from "./nal.ts";

/** Smallest usable ceiling: an FU needs 3 header bytes plus one data byte. */
export const H265_MIN_MAX_PAYLOAD = 4;

/** Splits one NAL unit into FU payloads appended to `out`. */
export function fragmentFu(nal: Buffer, maxPayload: number, out: Buffer[]): void {
  const type = (nal[0]! >> 1) & 0x3f;
  const h0 = (nal[0]! & 0x81) | (H265Type.FU << 1);
  const h1 = nal[1]!;
  const chunk = maxPayload - 3;
  let src = 2;
  let first = true;
  while (src < nal.length) {
    const n = Math.min(chunk, nal.length - src);
    const last = src + n >= nal.length;
    const p = Buffer.allocUnsafe(3 + n);
    p[0] = h0;
    p[1] = h1;
    p[2] = (first ? 0x80 : 0) | (last ? 0x40 : 0) | type;
    nal.copy(p, 3, src, src + n);
    out.push(p);
    src += n;
    first = false;
  }
}

/** One aggregation packet from NAL units: F is OR-ed, LayerId and TID are the lowest (§4.4.2). */
export function buildAp(nals: readonly Buffer[]): Buffer {
  let size = 2;
  let f = 0;
  let layer = 63;
  let tid = 7;
  for (const n of nals) {
    size += 2 + n.length;
    f |= n[0]! & 0x80;
    layer = Math.min(layer, ((n[0]! & 1) << 5) | (n[1]! >> 3));
    tid = Math.min(tid, n[1]! & 7);
  }
  const p = Buffer.allocUnsafe(size);
  p[0] = f | (H265Type.AP << 1) | (layer >> 5);
  p[1] = ((layer & 31) << 3) | tid;
  let o = 2;
  for (const n of nals) {
    p.writeUInt16BE(n.length, o);
    n.copy(p, o + 2);
    o += 2 + n.length;
  }
  return p;
}

/** The RTP payloads of one access unit, in order (the last one carries the marker bit). Empty/short NALs are skipped. */
export function packetizeH265(nals: readonly Buffer[], maxPayload: number): Buffer[] {
  const out: Buffer[] = [];
  const max = Math.max(H265_MIN_MAX_PAYLOAD, maxPayload);
  let run: Buffer[] = [];
  let runSize = 2;
  const flushRun = (): void => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length > 1) out.push(buildAp(run));
    run = [];
    runSize = 2;
  };
  for (const nal of nals) {
    if (nal.length < 3) continue;
    if (nal.length > max) {
      flushRun();
      fragmentFu(nal, max, out);
      continue;
    }
    if (runSize + 2 + nal.length > max) flushRun();
    run.push(nal);
    runSize += 2 + nal.length;
  }
  flushRun();
  return out;
}
