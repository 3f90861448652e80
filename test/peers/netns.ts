/**
 * A gateway side and a client side in two network namespaces, joined through a third
 * that shapes the link in each direction as `tc netem` would (rate with a bounded FIFO,
 * random loss, delay). This kernel has no sch_netem (only tbf/htb/pfifo, no classifiers,
 * no iptables), so the shaping is done by a small userspace bridge
 * (test/peers/link-emulator.py, AF_PACKET) in the middle namespace. Nothing is added to
 * the host's own namespace; closing deletes the three namespaces (and the veth pairs with
 * them). Needs root (the tests run as root).
 *
 *   await using link = await createNetnsLink();
 *   link.spawn("server", process.execPath, ["script.ts"]);   // inside the server side
 *   await link.shape("down", { rateKbit: 1000, lossPct: 5, delayMs: 150 });
 *
 * Addresses: 10.213.<n>.1 (server side), 10.213.<n>.2 (client side), /24, one L2 segment.
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";

const run = promisify(execFile);

/** What the link does to packets going one way (netem's terms). */
export interface NetemShape {
  /** Bottleneck rate, kbit/s (undefined: none). */
  rateKbit?: number;
  /** Random loss, percent. */
  lossPct?: number;
  /** One-way delay, ms. */
  delayMs?: number;
  /** Packets the bottleneck queue holds before it drops. Default netem's 1000. */
  limit?: number;
  /** Drop every IPv4 UDP packet this way: a firewall that lets only TCP through. */
  dropUdp?: boolean;
}

export interface NetnsLink extends AsyncDisposable {
  readonly serverNs: string;
  readonly clientNs: string;
  readonly serverAddress: string;
  readonly clientAddress: string;
  /** Shape packets going to the client ("down") or to the server ("up"); answers how many UDP packets were dropped that way so far (`dropUdp`). */
  shape(direction: "down" | "up", s: NetemShape): Promise<{ droppedUdp: number }>;
  /** Starts a process inside one side's namespace. */
  spawn(side: "server" | "client", command: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** An executable that runs `binary` with its arguments inside one side's namespace (for tools that take a path). */
  wrapper(side: "server" | "client", binary: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * A new network namespace with its loopback up and without IPv6 (the tests' links are IPv4):
 * else each veth's link-local address turns from tentative to valid a second or so after it
 * comes up, and a Chromium started meanwhile sees its network change and fails the navigation it
 * is making (net::ERR_NETWORK_CHANGED, seen once in a full run).
 */
export async function addNamespace(ns: string): Promise<void> {
  await run("ip", ["netns", "add", ns]);
  for (const conf of ["all", "default"]) await run("ip", ["netns", "exec", ns, "sysctl", "-q", "-w", `net.ipv6.conf.${conf}.disable_ipv6=1`]);
  await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
}

export async function createNetnsLink(): Promise<NetnsLink> {
  const tag = randomBytes(3).toString("hex");
  const serverNs = `gh-${tag}-s`;
  const clientNs = `gh-${tag}-c`;
  const midNs = `gh-${tag}-m`;
  const vs = `gh${tag}s`;
  const vc = `gh${tag}c`;
  const ms = `gh${tag}ms`;
  const mc = `gh${tag}mc`;
  const net = randomInt(1, 254);
  const serverAddress = `10.213.${net}.1`;
  const clientAddress = `10.213.${net}.2`;
  const ip = (...args: string[]) => run("ip", args);
  const dirs: string[] = [];
  let emulator: ChildProcess | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    if (emulator && emulator.exitCode === null) {
      const gone = new Promise((r) => emulator!.once("exit", r));
      emulator.stdin?.end();
      await Promise.race([gone, new Promise((r) => setTimeout(r, 2000))]);
      if (emulator.exitCode === null) emulator.kill("SIGKILL");
    }
    for (const ns of [serverNs, clientNs, midNs]) await ip("netns", "del", ns).catch(() => {});
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  };
  const answers: ((line: string) => void)[] = [];
  try {
    for (const ns of [serverNs, clientNs, midNs]) await addNamespace(ns);
    await ip("link", "add", vs, "netns", serverNs, "type", "veth", "peer", "name", ms, "netns", midNs);
    await ip("link", "add", vc, "netns", clientNs, "type", "veth", "peer", "name", mc, "netns", midNs);
    await ip("-n", serverNs, "addr", "add", `${serverAddress}/24`, "dev", vs);
    await ip("-n", clientNs, "addr", "add", `${clientAddress}/24`, "dev", vc);
    for (const [ns, dev] of [
      [serverNs, vs],
      [clientNs, vc],
      [midNs, ms],
      [midNs, mc],
    ] as const) {
      // One MTU-sized frame per packet through the bridge (no segmentation offload to undo).
      await ip("-n", ns, "link", "set", dev, "gso_max_segs", "1", "gro_max_size", "1500");
      await ip("-n", ns, "link", "set", dev, "up", "promisc", "on");
    }
    const script = new URL("./link-emulator.py", import.meta.url).pathname;
    emulator = spawn("ip", ["netns", "exec", midNs, "/usr/bin/python3", script, ms, mc], { stdio: ["pipe", "pipe", "inherit"] });
    const lines = createInterface({ input: emulator.stdout! });
    lines.on("line", (l) => answers.shift()?.(l));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("link emulator did not start")), 10_000);
      answers.push(() => {
        clearTimeout(t);
        resolve();
      });
      emulator!.once("exit", (code) => reject(new Error(`link emulator exited (${code})`)));
    });
  } catch (err) {
    await close();
    throw err;
  }
  const nsOf = (side: "server" | "client") => (side === "server" ? serverNs : clientNs);
  return {
    serverNs,
    clientNs,
    serverAddress,
    clientAddress,
    async shape(direction, s) {
      return new Promise<{ droppedUdp: number }>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("link emulator did not answer")), 5000);
        answers.push((line) => {
          clearTimeout(t);
          resolve({ droppedUdp: Number((JSON.parse(line) as { droppedUdp?: number }).droppedUdp ?? 0) });
        });
        emulator!.stdin!.write(`${JSON.stringify({ dir: direction, ...s })}\n`);
      });
    },
    spawn(side, command, args, opts = {}) {
      return spawn("ip", ["netns", "exec", nsOf(side), command, ...args], opts);
    },
    async wrapper(side, binary) {
      const dir = await mkdtemp(path.join(tmpdir(), "gatehouse-netns-"));
      dirs.push(dir);
      const file = path.join(dir, path.basename(binary));
      await writeFile(file, `#!/bin/sh\nexec ip netns exec ${nsOf(side)} ${binary} "$@"\n`);
      await chmod(file, 0o755);
      return file;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The gateway of test/peers/netns-gateway.ts, running in a link's server namespace. */
export interface NetnsGateway extends AsyncDisposable {
  /** The page's address: the forwarder on the server side's address; in grid mode the gateway's own loopback origin (see `via`). */
  readonly url: string;
  /** Grid mode: the server side's forwarder (host:port) that a client-side forwarder of `url` must reach. */
  readonly via: string | undefined;
  /** The gateway's `status` answer (see netns-gateway.ts). */
  status<T = Record<string, unknown>>(): Promise<T>;
  /** Ends its stdin (it closes everything) and waits for it to exit (SIGKILL after 15 s). Idempotent. */
  close(): Promise<void>;
}

/** Starts test/peers/netns-gateway.ts in `link`'s server namespace (`mode`: its second argument) and waits for its address. */
export async function startNetnsGateway(link: NetnsLink, mode?: "grid"): Promise<NetnsGateway> {
  const script = new URL("./netns-gateway.ts", import.meta.url).pathname;
  const child = link.spawn("server", process.execPath, [script, link.serverAddress, ...(mode ? [mode] : [])], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const waiting: ((v: Record<string, unknown>) => void)[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => {
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(l) as Record<string, unknown>;
    } catch {
      return; // not one of its answers
    }
    waiting.shift()?.(v);
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const next = (ms = 30_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`gateway child said nothing in ${ms} ms: ${stderr}`)), ms);
      const gone = () => {
        clearTimeout(t);
        reject(new Error(`gateway child exited (${child.exitCode}): ${stderr}`));
      };
      child.once("exit", gone);
      waiting.push((v) => {
        clearTimeout(t);
        child.off("exit", gone);
        resolve(v);
      });
    });
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      child.stdin!.end();
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
    })());
  try {
    const { url, via } = (await next(60_000)) as { url: string; via?: string };
    return {
      url,
      via,
      async status<T>() {
        const p = next();
        child.stdin!.write("status\n");
        return (await p)["status"] as T;
      },
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
