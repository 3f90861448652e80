/**
 * The test network guard: nothing the tests run may look up a name or reach an address
 * off this host. Installed in every process and thread of a test run (vitest's forks, the
 * media worker threads, Node child processes: see global-setup.ts), it refuses
 *
 * - name lookups: dns.lookup / dns.promises.lookup of anything but an allowed IP literal
 *   (a literal asks no resolver), and every resolve*, reverse and lookupService (they ask
 *   a DNS server whatever the argument), on the module and on every Resolver;
 * - TCP connects (net, tls, http, fetch, WebSocket all end in net.Socket#connect) to a host
 *   name or to an address outside the allow-list;
 * - UDP sends and connects (dgram) to a name or an address outside the allow-list;
 * - the native fast path's datagram writes (sendBatch, sealSend) to such an address;
 *
 * and records each refusal (one JSON line per refusal in GATEHOUSE_NET_GUARD_DIR) for the
 * per-file check (setup.ts) and the run's check (global-setup.ts), which fail the run.
 *
 * A refusal behaves like a closed network: a lookup fails with ENOTFOUND, a connect with
 * ECONNREFUSED, a datagram with EPERM (what a local firewall rule gives); the code under test
 * sees an ordinary error, and the record says where it came from.
 *
 * The allow-list (explicit; nothing else passes):
 * - in the host's network namespace: loopback (127.0.0.0/8, ::1, and their IPv4-mapped form)
 *   and the unspecified addresses 0.0.0.0 and :: (Linux delivers a connect or send to them
 *   to this host itself); the exact addresses of this namespace's own interfaces (delivered
 *   locally; a browser offers them as host candidates), never their subnets; Unix domain sockets;
 * - in a network namespace a test created (the process's /proc/self/ns/net differs from the
 *   one the run started in, e.g. `unshare -rn` or `ip netns exec`): also the private and
 *   documentation ranges tests give their namespaced interfaces (10/8, 172.16/12, 192.168/16,
 *   100.64/10, 198.18/15, 192.0.2/24, 198.51.100/24, 203.0.113/24, fc00::/7, fe80::/10,
 *   2001:db8::/32). Such addresses stay refused in the host namespace: there they would
 *   leave the host.
 * Multicast and broadcast (mDNS, SSDP…) are refused everywhere.
 */
import dgram from "node:dgram";
import dns from "node:dns";
import { appendFileSync, readlinkSync } from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import net from "node:net";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { threadId } from "node:worker_threads";
import workerThreads from "node:worker_threads";
import { CidrList } from "../../config/net/cidr.ts";

export const GUARD_DIR_ENV = "GATEHOUSE_NET_GUARD_DIR";
export const GUARD_NETNS_ENV = "GATEHOUSE_NET_GUARD_NETNS";
export const GUARD_FILE_ENV = "GATEHOUSE_NET_GUARD_FILE";
/**
 * The module every thread and child process preloads. `--require` (Node loads this ES module
 * synchronously) rather than `--import`, which eval workers (werift starts one) skip.
 */
export const PRELOAD_PATH = fileURLToPath(new URL("./preload.ts", import.meta.url));

export type RefusalKind = "lookup" | "connect" | "send";

/** One refused operation, as recorded. */
export interface Refusal {
  kind: RefusalKind;
  /** What was asked for: a name, or address:port. */
  target: string;
  /** The API that was refused (dns.lookup, net.connect, dgram.send, native.sealSend…). */
  via: string;
  /** The test file running when it happened (GATEHOUSE_NET_GUARD_FILE), if known. */
  file?: string;
  pid: number;
  thread: number;
  /** Whether the process was in the run's own network namespace. */
  hostNamespace: boolean;
  /** The caller's stack, a few frames. */
  stack: string;
}

const HOST_ALLOW = new CidrList(["127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"], "net guard host allow-list");
const NAMESPACE_ALLOW = new CidrList(
  [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "fc00::/7",
    "fe80::/10",
    "2001:db8::/32",
  ],
  "net guard namespace allow-list",
);

function currentNetns(): string {
  try {
    return readlinkSync("/proc/self/ns/net");
  } catch {
    return "unknown";
  }
}

/** Whether this process runs in the network namespace the test run started in. */
export function inHostNamespace(): boolean {
  const host = process.env[GUARD_NETNS_ENV];
  return host === undefined || host === currentNetns();
}

/** Whether an IP literal may be contacted from this process (false for names and non-literals). */
export function addressAllowed(address: string): boolean {
  // Media paths ask for every datagram: remember the verdicts (a bounded cache).
  let v = verdicts.get(address);
  if (v === undefined) {
    const literal = address.replace(/%.*$/, "");
    v = net.isIP(literal) !== 0 && (HOST_ALLOW.has(address) || ownAddresses().has(literal) || (!state.hostNs && NAMESPACE_ALLOW.has(address)));
    if (verdicts.size >= 4096) verdicts.clear();
    verdicts.set(address, v);
  }
  return v;
}
const verdicts = new Map<string, boolean>();

/**
 * The addresses of this namespace's own interfaces, exactly (not their subnets): the kernel
 * delivers a datagram to one of them locally, so it never leaves the host. A browser started
 * by a test offers them as host candidates (Chromium gathers every interface), and the
 * gateway's connectivity checks go there.
 */
function ownAddresses(): ReadonlySet<string> {
  if (own === undefined) {
    own = new Set<string>();
    for (const list of Object.values(os.networkInterfaces())) {
      for (const a of list ?? []) if (!a.internal) own.add(a.address.replace(/%.*$/, ""));
    }
  }
  return own;
}
let own: Set<string> | undefined;

/**
 * The thread's guard state, on globalThis: a test file loads this module again through
 * vitest's module runner, and that copy must see the state of the preloaded one.
 */
interface GuardState {
  installed: boolean;
  hostNs: boolean;
  expecting: Refusal[] | undefined;
}
const state: GuardState = ((globalThis as unknown as Record<symbol, GuardState>)[Symbol.for("gatehouse.netGuard")] ??= {
  installed: false,
  hostNs: true,
  expecting: undefined,
});

/**
 * Runs `fn` with this thread's refusals collected and returned instead of recorded for the
 * run: for the guard's own tests, which provoke refusals on purpose. Nothing else may run in
 * this thread meanwhile (its refusals would be taken as expected).
 */
export async function expectRefusals(fn: () => Promise<void>): Promise<Refusal[]> {
  if (state.expecting) throw new Error("expectRefusals does not nest");
  const got: Refusal[] = [];
  state.expecting = got;
  try {
    await fn();
  } finally {
    state.expecting = undefined;
  }
  return got;
}

function record(kind: RefusalKind, target: string, via: string): void {
  const stack = (new Error().stack ?? "")
    .split("\n")
    .slice(1)
    .filter((l) => !l.includes("/test/guard/"))
    .slice(0, 8)
    .join("\n");
  const file = process.env[GUARD_FILE_ENV];
  const r: Refusal = { kind, target, via, ...(file ? { file } : {}), pid: process.pid, thread: threadId, hostNamespace: state.hostNs, stack };
  if (state.expecting) {
    state.expecting.push(r);
    return;
  }
  const dir = process.env[GUARD_DIR_ENV];
  if (dir) {
    try {
      appendFileSync(`${dir}/${process.pid}-${threadId}.jsonl`, JSON.stringify(r) + "\n");
    } catch {
      // The run's check reads what it can; this thread's own list still has it.
    }
  }
}

function refusedError(code: "ENOTFOUND" | "ECONNREFUSED" | "EPERM", what: string, syscall: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${code} ${what} (refused by the test network guard: nothing may leave this host)`);
  err.code = code;
  err.syscall = syscall;
  return err;
}

type Fn = (...args: unknown[]) => unknown;

function patchDns(): void {
  const dnsPromises = dns.promises as unknown as Record<string, unknown>;
  const dnsModule = dns as unknown as Record<string, unknown>;
  const lookupAllowed = (host: unknown): boolean => !host || (typeof host === "string" && addressAllowed(host));

  const lookup = dns.lookup as unknown as Fn;
  dnsModule["lookup"] = function guardedLookup(this: unknown, host: unknown, ...rest: unknown[]) {
    if (lookupAllowed(host)) return lookup.call(this, host, ...rest);
    record("lookup", String(host), "dns.lookup");
    const cb = rest.findLast((a) => typeof a === "function") as Fn | undefined;
    if (cb) process.nextTick(cb, refusedError("ENOTFOUND", String(host), "getaddrinfo"));
    return {};
  };
  const plookup = dns.promises.lookup as unknown as Fn;
  dnsPromises["lookup"] = function guardedLookup(this: unknown, host: unknown, ...rest: unknown[]) {
    if (lookupAllowed(host)) return plookup.call(this, host, ...rest);
    record("lookup", String(host), "dns.promises.lookup");
    return Promise.reject(refusedError("ENOTFOUND", String(host), "getaddrinfo"));
  };

  // Everything else asks a DNS server (or getnameinfo) whatever its argument.
  const isQuery = (name: string) => name.startsWith("resolve") || name === "reverse" || name === "lookupService";
  const refuseCallback = (name: string) =>
    function refused(this: unknown, ...args: unknown[]) {
      record("lookup", String(args[0]), `dns.${name}`);
      const cb = args.findLast((a) => typeof a === "function") as Fn | undefined;
      if (cb) process.nextTick(cb, refusedError("ENOTFOUND", String(args[0]), name));
      return {};
    };
  const refusePromise = (name: string) =>
    function refused(this: unknown, ...args: unknown[]) {
      record("lookup", String(args[0]), `dns.promises.${name}`);
      return Promise.reject(refusedError("ENOTFOUND", String(args[0]), name));
    };
  for (const name of Object.keys(dnsModule)) if (isQuery(name) && typeof dnsModule[name] === "function") dnsModule[name] = refuseCallback(name);
  for (const name of Object.keys(dnsPromises)) if (isQuery(name) && typeof dnsPromises[name] === "function") dnsPromises[name] = refusePromise(name);
  for (const [proto, make] of [
    [dns.Resolver.prototype, refuseCallback],
    [dns.promises.Resolver.prototype, refusePromise],
  ] as const) {
    const p = proto as unknown as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(p)) if (isQuery(name) && typeof p[name] === "function") p[name] = make(name);
  }
}

interface ConnectOptions {
  path?: string | null;
  host?: string;
  port?: number | string;
}
type NormalizeArgs = (args: unknown[]) => [ConnectOptions, unknown];

function patchNet(): void {
  const normalize = (net as unknown as { _normalizeArgs: NormalizeArgs })._normalizeArgs;
  const proto = net.Socket.prototype as unknown as { connect: Fn };
  const connect = proto.connect;
  proto.connect = function guardedConnect(this: net.Socket, ...args: unknown[]) {
    const normalized = Array.isArray(args[0]) ? (args[0] as [ConnectOptions, unknown]) : normalize(args);
    const o = normalized[0] ?? {};
    // A Unix domain socket (Node's own test: a truthy path; http passes path: null for TCP).
    if (o.path) return connect.apply(this, args);
    const host = o.host ?? "localhost";
    if (addressAllowed(host)) return connect.apply(this, args);
    const target = `${host}:${o.port}`;
    record(net.isIP(host) ? "connect" : "lookup", target, "net.Socket#connect");
    const err = refusedError(net.isIP(host) ? "ECONNREFUSED" : "ENOTFOUND", target, net.isIP(host) ? "connect" : "getaddrinfo");
    // As a real refusal would: after the caller (http's agent, tls) has attached its listeners.
    setImmediate(() => this.destroy(err));
    return this;
  };
}

function patchDgram(): void {
  const proto = dgram.Socket.prototype as unknown as { send: Fn; connect: Fn };
  const p = proto as unknown as { disconnect: Fn };
  const send = proto.send;
  const udpConnect = proto.connect;
  const disconnect = p.disconnect;
  // Sockets connected (or connecting) to an allowed address: their sends name no address.
  const connected = new WeakSet<dgram.Socket>();
  const isConnected = (s: dgram.Socket): boolean => connected.has(s);
  p.disconnect = function guardedDisconnect(this: dgram.Socket, ...args: unknown[]) {
    connected.delete(this);
    return disconnect.apply(this, args);
  };
  const fail = (s: dgram.Socket, err: Error, cb: unknown) => {
    if (typeof cb === "function") process.nextTick(cb as Fn, err);
    // Like a firewall drop: a socket nobody listens to for errors just loses the datagram.
    else if (s.listenerCount("error") > 0) process.nextTick(() => s.emit("error", err));
  };
  proto.send = function guardedSend(this: dgram.Socket, ...args: unknown[]) {
    if (isConnected(this)) return send.apply(this, args);
    // send(msg, offset, length, port, address, cb) or send(msg, port, address, cb).
    const long = args[4] !== undefined || (args[3] !== undefined && typeof args[3] !== "function");
    const port = long ? args[3] : args[1];
    let address = long ? args[4] : args[2];
    const cb = args.findLast((a) => typeof a === "function");
    if (typeof address === "function") address = undefined;
    // No address: Node sends to the loopback address of the socket's family.
    if (address === undefined || address === null || address === "") return send.apply(this, args);
    if (typeof address === "string" && addressAllowed(address)) return send.apply(this, args);
    const target = `${String(address)}:${String(port)}`;
    record(net.isIP(String(address)) ? "send" : "lookup", target, "dgram.Socket#send");
    fail(this, refusedError(net.isIP(String(address)) ? "EPERM" : "ENOTFOUND", target, "send"), cb);
  };
  proto.connect = function guardedUdpConnect(this: dgram.Socket, ...args: unknown[]) {
    const address = typeof args[1] === "string" ? args[1] : undefined;
    if (address === undefined || addressAllowed(address)) {
      connected.add(this);
      return udpConnect.apply(this, args);
    }
    const target = `${address}:${String(args[0])}`;
    record(net.isIP(address) ? "connect" : "lookup", target, "dgram.Socket#connect");
    fail(this, refusedError(net.isIP(address) ? "EPERM" : "ENOTFOUND", target, "connect"), undefined);
  };
}

/** The address a sockaddr_in / sockaddr_in6 Buffer (from the addon's sockaddr()) names. */
export function sockaddrText(b: Buffer): string {
  if (b.length === 16) return `${b[4]}.${b[5]}.${b[6]}.${b[7]}:${b.readUInt16BE(2)}`;
  if (b.length === 28) {
    const groups: string[] = [];
    for (let i = 8; i < 24; i += 2) groups.push(b.readUInt16BE(i).toString(16));
    return `[${groups.join(":")}]:${b.readUInt16BE(2)}`;
  }
  return "bad sockaddr";
}

function sockaddrAllowed(b: unknown): boolean {
  // Not a socket address at all: the addon throws for it itself ("bad socket address").
  if (!Buffer.isBuffer(b) || (b.length !== 16 && b.length !== 28)) return true;
  const text = sockaddrText(b);
  const host = text.startsWith("[") ? text.slice(1, text.lastIndexOf("]")) : text.slice(0, text.lastIndexOf(":"));
  return addressAllowed(net.isIP(host) ? host : "none");
}

/** Wraps the native fast path's writers: a refused destination's datagrams are not written (fd −1). */
function guardAddon(exports: Record<string, unknown>): void {
  const verdicts = new WeakMap<Buffer, boolean>();
  const allowed = (b: unknown): boolean => {
    if (!Buffer.isBuffer(b)) return true;
    let v = verdicts.get(b);
    if (v === undefined) {
      v = sockaddrAllowed(b);
      verdicts.set(b, v);
    }
    return v;
  };
  const sendBatch = exports["sendBatch"];
  if (typeof sendBatch === "function") {
    exports["sendBatch"] = function guardedSendBatch(fds: Int32Array, bufs: unknown, lens: unknown, addrs: Buffer[], n: number, results: unknown) {
      let f = fds;
      for (let i = 0; i < n; i++) {
        if (fds[i]! >= 0 && !allowed(addrs[i])) {
          record("send", sockaddrText(addrs[i]!), "native.sendBatch");
          if (f === fds) f = Int32Array.from(fds);
          f[i] = -1;
        }
      }
      return (sendBatch as Fn)(f, bufs, lens, addrs, n, results);
    };
  }
  const sealSend = exports["sealSend"];
  if (typeof sealSend === "function") {
    exports["sealSend"] = function guardedSealSend(...a: unknown[]) {
      // (stage, slot, lens, rocs, order, ctxs, addrs, fds, ends, runs, results)
      const addrs = a[6] as Buffer[];
      const fds = a[7] as Int32Array;
      const runs = a[9] as number;
      let f = fds;
      for (let r = 0; r < runs; r++) {
        if (fds[r]! >= 0 && !allowed(addrs[r])) {
          record("send", sockaddrText(addrs[r]!), "native.sealSend");
          if (f === fds) f = Int32Array.from(fds);
          f[r] = -1;
        }
      }
      a[7] = f;
      return (sealSend as Fn)(...a);
    };
  }
}

function patchDlopen(): void {
  const dlopen = process.dlopen as unknown as Fn;
  (process as unknown as { dlopen: Fn }).dlopen = function guardedDlopen(this: unknown, ...args: unknown[]) {
    const r = dlopen.apply(this, args);
    const [module, filename] = args as [{ exports: Record<string, unknown> }, string];
    if (/fastpath\.node$/.test(filename)) guardAddon(module.exports);
    return r;
  };
}

/** Every worker thread preloads the guard too, whatever execArgv and env it is given. */
function patchWorkers(): void {
  const Original = workerThreads.Worker;
  class GuardedWorker extends Original {
    constructor(filename: string | URL, options: workerThreads.WorkerOptions = {}) {
      const execArgv = options.execArgv ?? process.execArgv;
      const preloaded = execArgv.some((a, i) => a === `--require=${PRELOAD_PATH}` || (a === "--require" && execArgv[i + 1] === PRELOAD_PATH));
      const env =
        options.env && typeof options.env === "object"
          ? { ...pick(process.env, [GUARD_DIR_ENV, GUARD_NETNS_ENV, GUARD_FILE_ENV]), ...(options.env as Record<string, string>) }
          : options.env;
      super(filename, { ...options, execArgv: preloaded ? execArgv : [...execArgv, "--require", PRELOAD_PATH], ...(env !== undefined ? { env } : {}) });
    }
  }
  (workerThreads as unknown as { Worker: unknown }).Worker = GuardedWorker;
}

function pick(env: NodeJS.ProcessEnv, keys: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of keys) if (env[k] !== undefined) out[k] = env[k]!;
  return out;
}

/** Installs the guard in this thread (idempotent). */
export function installNetGuard(): void {
  if (state.installed) return;
  state.installed = true;
  state.hostNs = inHostNamespace();
  patchDns();
  patchNet();
  patchDgram();
  patchDlopen();
  patchWorkers();
  syncBuiltinESMExports();
}
