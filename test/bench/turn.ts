/**
 * TURN relay benchmark, side by side with coturn on the same host and the same load.
 *
 * Both servers run as processes of their own: ours is `turn/main.ts`, coturn is
 * `turnserver --use-auth-secret --static-auth-secret=… --allow-loopback-peers` with one
 * relay thread. The load is coturn's own `turnutils_uclient` (time-limited credentials,
 * UDP, ChannelData) against `turnutils_peer` echoing on loopback. For each run we read
 * the server's CPU time (utime + stime from /proc/<pid>/stat) before and after and divide
 * by the packets it relayed (every message the client sent went client → peer, every one
 * it received came back peer → client). Rounds alternate between the servers; the
 * result is the median of each.
 *
 * Run alone: `./node_modules/.bin/node test/bench/turn.ts` prints one JSON line.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { processCpuSeconds, runUclient, startCoturn, startTurnutilsPeer, type UclientResult } from "../peers/coturn.ts";

export interface TurnBenchOptions {
  /** Rounds per server. Default 5 (env TURN_BENCH_ROUNDS). */
  rounds?: number;
  /** Smoke run: a third of the messages per round. */
  quick?: boolean;
  /** Concurrent uclient sessions (allocations with a channel). Default 40. */
  clients?: number;
  /** Messages per session. Default 1500. */
  messages?: number;
  /** Payload bytes. Default 1200 (a video RTP packet). */
  length?: number;
  /** Milliseconds between a session's packets. Default 4. */
  intervalMs?: number;
  log?: (line: string) => void;
}

export interface TurnBenchResult {
  /** Relayed packets per second of one core's CPU time (1 / CPU per relayed packet). */
  turn_relay_pps_per_core: { gatehouse: number; coturn: number };
  /** Our CPU per relayed packet ÷ coturn's (1.0 = parity; lower is better). */
  turn_cpu_ratio_vs_coturn: number;
  /** CPU per relayed packet, µs (medians). */
  turn_cpu_us_per_packet: { gatehouse: number; coturn: number };
  /** Relayed packets per second the load asks for (clients × 1000/interval, both directions). */
  turn_relay_pps_nominal: number;
  /** Worst loss seen by the client in any round, %. */
  turn_loss_percent_max: { gatehouse: number; coturn: number };
  turn_bench_load: { clients: number; messages: number; length: number; intervalMs: number; rounds: number };
}

const SECRET = "bench-secret-0123456789abcdef";
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

interface Server {
  name: "gatehouse" | "coturn";
  port: number;
  pid: number;
  close(): Promise<void>;
}

async function startGatehouse(dir: string): Promise<Server> {
  const cfgFile = path.join(dir, "turn-bench.json");
  await writeFile(
    cfgFile,
    JSON.stringify({
      log: { level: "warn", format: "json" },
      turn: {
        enabled: true,
        secret: SECRET,
        realm: "gatehouse",
        udp: [{ host: "127.0.0.1", port: 0 }],
        relay: { address: "127.0.0.1", portRange: [0, 0] },
        peers: { allow: ["127.0.0.1"] },
        quotas: { allocationsPerUser: 10000, totalAllocations: 10000, bandwidthBytesPerSecond: 0 },
      },
    }),
  );
  const node = process.execPath;
  // Type stripping cannot run TypeScript parameter properties; the transform mode can.
  // GATEHOUSE_BENCH_TURN_ARGS: extra Node flags for our server (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
  const extra = process.env.GATEHOUSE_BENCH_TURN_ARGS?.split(" ").filter(Boolean) ?? [];
  const child: ChildProcess = spawn(node, ["--experimental-transform-types", "--no-warnings", ...extra, path.join(repoRoot, "turn/main.ts")], {
    cwd: repoRoot,
    env: { ...process.env, GATEHOUSE_CONFIG: cfgFile },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-20_000)));
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`gatehouse turn did not start: ${err}`)), 15_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => l.startsWith("{") && l.includes('"ready"'));
      if (!line) return;
      clearTimeout(timer);
      const ready = JSON.parse(line) as { udp: string[] };
      resolve(Number(ready.udp[0]!.split(":").pop()));
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`gatehouse turn exited ${code}: ${err}`));
    });
  });
  return {
    name: "gatehouse",
    port,
    pid: child.pid!,
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export async function benchTurn(o: TurnBenchOptions = {}): Promise<TurnBenchResult> {
  const load = {
    clients: o.clients ?? Number(process.env.TURN_BENCH_CLIENTS ?? 40),
    messages: o.messages ?? Number(process.env.TURN_BENCH_MESSAGES ?? (o.quick ? 500 : 1500)),
    length: o.length ?? Number(process.env.TURN_BENCH_LENGTH ?? 1200),
    intervalMs: o.intervalMs ?? Number(process.env.TURN_BENCH_INTERVAL_MS ?? 4),
    rounds: o.rounds ?? Number(process.env.TURN_BENCH_ROUNDS ?? 5),
  };
  const log = o.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const dir = await mkdtemp(path.join(os.tmpdir(), "gatehouse-turn-bench-"));
  const peer = await startTurnutilsPeer();
  const servers: Server[] = [];
  try {
    servers.push(await startGatehouse(dir));
    const coturn = await startCoturn({ secret: SECRET, realm: "gatehouse", relayThreads: 1 });
    servers.push({ name: "coturn", port: coturn.port, pid: coturn.pid, close: () => coturn.close() });

    const us: Record<Server["name"], number[]> = { gatehouse: [], coturn: [] };
    const loss: Record<Server["name"], number[]> = { gatehouse: [], coturn: [] };
    for (let round = 0; round < load.rounds; round++) {
      // Alternate which server goes first so drift on the shared machine hits both alike.
      const order = round % 2 === 0 ? servers : [...servers].reverse();
      for (const s of order) {
        const cpu0 = await processCpuSeconds(s.pid);
        const r: UclientResult = await runUclient({
          transport: "udp",
          port: s.port,
          secret: SECRET,
          user: `bench${round}`,
          peerPort: peer.port,
          clients: load.clients,
          messages: load.messages,
          length: load.length,
          intervalMs: load.intervalMs,
          timeoutMs: 120_000,
        });
        const cpu1 = await processCpuSeconds(s.pid);
        if (r.exitCode !== 0 || !(r.sentMessages > 0)) throw new Error(`${s.name}: uclient failed (${r.exitCode}):\n${r.tail}`);
        const relayed = r.sentMessages + r.receivedMessages;
        const perPacketUs = ((cpu1 - cpu0) * 1e6) / relayed;
        us[s.name].push(perPacketUs);
        loss[s.name].push(r.lossPercent);
        log(
          JSON.stringify({ bench: "turn", round, server: s.name, relayed, cpu_s: +(cpu1 - cpu0).toFixed(2), us_per_packet: +perPacketUs.toFixed(2), loss_percent: r.lossPercent }),
        );
      }
    }
    const g = median(us.gatehouse);
    const c = median(us.coturn);
    return {
      turn_relay_pps_per_core: { gatehouse: Math.round(1e6 / g), coturn: Math.round(1e6 / c) },
      turn_cpu_ratio_vs_coturn: +(g / c).toFixed(2),
      turn_cpu_us_per_packet: { gatehouse: +g.toFixed(2), coturn: +c.toFixed(2) },
      turn_relay_pps_nominal: Math.round((load.clients * 1000 * 2) / Math.max(1, load.intervalMs)),
      turn_loss_percent_max: { gatehouse: Math.max(...loss.gatehouse), coturn: Math.max(...loss.coturn) },
      turn_bench_load: load,
    };
  } finally {
    for (const s of servers) await s.close();
    await peer.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchTurn().then(
    (r) => process.stdout.write(JSON.stringify(r) + "\n"),
    (e: unknown) => {
      process.stderr.write(`turn bench failed: ${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
