/**
 * coturn (Debian package `coturn`) as a real TURN peer: `turnserver` for side-by-side
 * benchmarks, `turnutils_peer` as the UDP echo peer behind a relay, and
 * `turnutils_uclient` as a real TURN client / load generator, with its statistics parsed.
 *
 * Every launcher binds 127.0.0.1 and a free port, and every process is killed by its
 * own pid on close.
 */
import { spawn, type ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import net from "node:net";

/** A UDP port that was free a moment ago (coturn's tools cannot be told to pick one and report it). */
export async function freeUdpPort(pairWithNext = false): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const s = dgram.createSocket("udp4");
    const port = await new Promise<number>((resolve, reject) => {
      s.once("error", reject);
      s.bind(0, "127.0.0.1", () => resolve(s.address().port));
    });
    if (!pairWithNext) {
      await new Promise<void>((r) => s.close(() => r()));
      return port;
    }
    // Also check port+1 (turnutils_uclient binds a channel to peer port + 1).
    const s2 = dgram.createSocket("udp4");
    const ok = await new Promise<boolean>((resolve) => {
      s2.once("error", () => resolve(false));
      s2.bind(port + 1, "127.0.0.1", () => resolve(true));
    });
    await new Promise<void>((r) => s.close(() => r()));
    if (ok) await new Promise<void>((r) => s2.close(() => r()));
    if (ok && port < 65535) return port;
  }
  throw new Error("no free UDP port pair");
}

/** A TCP port that was free a moment ago. */
export async function freeTcpPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function waitExit(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = waitExit(child);
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(t);
}

/** Send a datagram to host:port until `answered(reply)` or the deadline; resolves true when answered. */
async function probeUdp(port: number, payload: Buffer, answered: (reply: Buffer) => boolean, timeoutMs: number): Promise<boolean> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  try {
    return await new Promise<boolean>((resolve) => {
      const deadline = setTimeout(() => {
        clearInterval(tick);
        resolve(false);
      }, timeoutMs);
      s.on("message", (m) => {
        if (!answered(m)) return;
        clearTimeout(deadline);
        clearInterval(tick);
        resolve(true);
      });
      const send = (): void => s.send(payload, port, "127.0.0.1");
      const tick = setInterval(send, 50);
      send();
    });
  } finally {
    s.close();
  }
}

/** A STUN Binding request (20 bytes, fixed transaction id) for readiness probes. */
export function bindingRequest(): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(0x0001, 0);
  b.writeUInt32BE(0x2112a442, 4);
  b.write("gatehouse-tx", 8, "latin1");
  return b;
}

export interface TurnutilsPeer {
  readonly port: number;
  readonly pid: number;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** `turnutils_peer`: a UDP echo server on 127.0.0.1 (port and port+1 free). */
export async function startTurnutilsPeer(): Promise<TurnutilsPeer> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freeUdpPort(true);
    const child = spawn("turnutils_peer", ["-L", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
    const ok = await probeUdp(port, Buffer.from("ping"), (m) => m.toString() === "ping", 3000);
    if (ok) {
      const close = (): Promise<void> => killChild(child);
      return { port, pid: child.pid!, close, [Symbol.asyncDispose]: close };
    }
    await killChild(child);
  }
  throw new Error("turnutils_peer did not start");
}

export interface CoturnOptions {
  /** Shared secret for `--use-auth-secret` (time-limited credentials). */
  secret: string;
  realm?: string;
  /** Relay port range [min, max]. Default 49152–65535. */
  relayPorts?: [number, number];
  /** Relay threads (`--relay-threads`); default 1 so CPU per packet compares with a single Node thread. */
  relayThreads?: number;
  /** Extra command-line arguments. */
  args?: string[];
}

export interface Coturn {
  readonly port: number;
  readonly pid: number;
  /** stdout+stderr collected so far (its log goes to stdout). */
  output(): string;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * `turnserver` on 127.0.0.1 with time-limited credentials and loopback peers allowed,
 * UDP and TCP listener on a free port, no TLS/DTLS, no CLI, no database.
 */
export async function startCoturn(o: CoturnOptions): Promise<Coturn> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freeUdpPort();
    const [lo, hi] = o.relayPorts ?? [49152, 65535];
    const args = [
      "-n",
      "--listening-ip=127.0.0.1",
      "--relay-ip=127.0.0.1",
      `--listening-port=${port}`,
      "--use-auth-secret",
      `--static-auth-secret=${o.secret}`,
      `--realm=${o.realm ?? "gatehouse"}`,
      "--allow-loopback-peers",
      "--no-cli",
      "--no-tls",
      "--no-dtls",
      `--min-port=${lo}`,
      `--max-port=${hi}`,
      `--relay-threads=${o.relayThreads ?? 1}`,
      "--log-file=stdout",
      "--simple-log",
      ...(o.args ?? []),
    ];
    const child = spawn("turnserver", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
    child.stderr!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
    const ok = await probeUdp(port, bindingRequest(), (m) => m.length >= 20 && m.readUInt16BE(0) === 0x0101, 5000);
    if (ok) {
      const close = (): Promise<void> => killChild(child);
      return { port, pid: child.pid!, output: () => out, close, [Symbol.asyncDispose]: close };
    }
    await killChild(child);
  }
  throw new Error("turnserver did not start");
}

export interface UclientOptions {
  /** TURN server port. */
  port: number;
  host?: string;
  /** Transport to the server. */
  transport: "udp" | "tcp" | "tls";
  /** REST secret (`-W`): time-limited credentials are minted by the client. */
  secret: string;
  /** Subject part of the REST username (`-u`). */
  user?: string;
  /** The UDP echo peer (turnutils_peer). */
  peerPort: number;
  peerHost?: string;
  /** Concurrent clients (`-m`). Default 1. */
  clients?: number;
  /** Messages per client (`-n`). Default 50. */
  messages?: number;
  /** Payload bytes (`-l`). Default 200. */
  length?: number;
  /** Milliseconds between a client's packets (`-z`). Default 20. */
  intervalMs?: number;
  /** No RTCP allocation (`-c`): one allocation per client instead of two plus a probe. Default true. */
  noRtcp?: boolean;
  /** Use Send indications instead of ChannelData (`-s`). */
  sendIndications?: boolean;
  /** Kill after this long, ms. Default 60000. */
  timeoutMs?: number;
  extraArgs?: string[];
}

export interface UclientResult {
  exitCode: number | null;
  sentMessages: number;
  receivedMessages: number;
  sentBytes: number;
  receivedBytes: number;
  lostPackets: number;
  lossPercent: number;
  sendDropped: number;
  /** Wall time of the run, ms. */
  wallMs: number;
  /** The last lines of output, for assertion messages. */
  tail: string;
}

/** Parse the summary `turnutils_uclient` prints at the end of a run. */
export function parseUclientOutput(text: string): Omit<UclientResult, "exitCode" | "wallMs" | "tail"> {
  const num = (re: RegExp): number => {
    const all = [...text.matchAll(new RegExp(re.source, re.flags.includes("g") ? re.flags : re.flags + "g"))];
    const m = all[all.length - 1];
    return m ? Number(m[1]) : NaN;
  };
  return {
    sentMessages: num(/start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=\d+\s*$/m),
    receivedMessages: num(/start_mclient: tot_send_msgs=\d+, tot_recv_msgs=(\d+)\s*$/m),
    sentBytes: num(/start_mclient: tot_send_bytes ~ (\d+), tot_recv_bytes ~ \d+\s*$/m),
    receivedBytes: num(/start_mclient: tot_send_bytes ~ \d+, tot_recv_bytes ~ (\d+)\s*$/m),
    lostPackets: num(/Total lost packets (\d+)/),
    lossPercent: num(/Total lost packets \d+ \(([\d.]+)%\)/),
    sendDropped: num(/total send dropped (\d+)/),
  };
}

/** Run `turnutils_uclient` to completion and parse its statistics. */
export async function runUclient(o: UclientOptions): Promise<UclientResult> {
  const args: string[] = [];
  if (o.transport !== "udp") args.push("-t");
  if (o.transport === "tls") args.push("-S");
  if (o.noRtcp ?? true) args.push("-c");
  if (o.sendIndications) args.push("-s");
  args.push(
    "-W",
    o.secret,
    "-u",
    o.user ?? "uclient",
    "-e",
    o.peerHost ?? "127.0.0.1",
    "-r",
    String(o.peerPort),
    "-m",
    String(o.clients ?? 1),
    "-n",
    String(o.messages ?? 50),
    "-l",
    String(o.length ?? 200),
    "-z",
    String(o.intervalMs ?? 20),
    "-p",
    String(o.port),
    ...(o.extraArgs ?? []),
    o.host ?? "127.0.0.1",
  );
  const started = Date.now();
  const child = spawn("turnutils_uclient", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-500_000)));
  child.stderr!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-500_000)));
  const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 60_000);
  const exitCode = await waitExit(child);
  clearTimeout(timer);
  const lines = out.trim().split("\n");
  return { exitCode, ...parseUclientOutput(out), wallMs: Date.now() - started, tail: lines.slice(-12).join("\n") };
}

/** CPU time (user + system) of a process so far, in seconds, from /proc/<pid>/stat. */
export async function processCpuSeconds(pid: number): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / clockTicksPerSecond();
}

/** USER_HZ; 100 on every Linux this runs on (sysconf is not reachable from Node). */
function clockTicksPerSecond(): number {
  return 100;
}
