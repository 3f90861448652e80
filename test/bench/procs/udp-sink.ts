/**
 * N plain UDP receivers in one process, for the forwarding-latency floor
 * (test/bench/floor.ts): each socket reads its datagrams and checks the RTP sequence
 * number in the clear header, the per-datagram work of the fan-out bench's light
 * receivers, with no WebRTC around it.
 *
 *   forkChild("test/bench/procs/udp-sink.ts", ["--sockets", "100"]) → ready { ports, pid }
 *   read → { datagrams, outOfOrder }; close
 */
import dgram from "node:dgram";
import { parseArgs } from "node:util";
import { failStart, serve } from "../lib/child.ts";

const { values } = parseArgs({ options: { sockets: { type: "string" } } });
const n = Number(values.sockets ?? 100);
const sockets: dgram.Socket[] = [];
let datagrams = 0;
let outOfOrder = 0;
try {
  for (let i = 0; i < n; i++) {
    const s = dgram.createSocket({ type: "udp4", recvBufferSize: 4 * 1024 * 1024 });
    let last = -1;
    s.on("message", (m) => {
      datagrams++;
      const seq = m.length >= 12 ? m.readUInt16BE(2) : -1;
      if (last >= 0 && seq !== ((last + 1) & 0xffff)) outOfOrder++;
      last = seq;
    });
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.bind(0, "127.0.0.1", () => resolve());
    });
    sockets.push(s);
  }
} catch (err) {
  failStart(err);
}

serve(
  {
    read: () => ({ datagrams, outOfOrder }),
    close: async () => {
      await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  },
  { ports: sockets.map((s) => s.address().port), pid: process.pid },
);
