/**
 * Process measurements from /proc: CPU time (utime + stime of every thread of the
 * process), resident memory, thread count, and the kernel's UDP drop counters.
 * Parsers are pure (text in, numbers out); the readers are thin wrappers.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

export interface ProcStat {
  /** Parent process id. */
  ppid: number;
  /** User-mode CPU, clock ticks (all threads). */
  utime: number;
  /** Kernel-mode CPU, clock ticks (all threads). */
  stime: number;
  numThreads: number;
  /** Resident set, pages. */
  rssPages: number;
}

/**
 * Parses /proc/<pid>/stat (proc(5)). The command name (field 2) may hold spaces and
 * parentheses, so fields are counted from the LAST ')'.
 */
export function parseProcStat(text: string): ProcStat {
  const close = text.lastIndexOf(")");
  if (close < 0) throw new Error("not a /proc/<pid>/stat line");
  // After ") ": field 3 (state) is index 0, so field n is index n − 3.
  const f = text.slice(close + 2).trim().split(/\s+/);
  const num = (field: number) => {
    const v = Number(f[field - 3]);
    if (!Number.isFinite(v)) throw new Error(`/proc stat field ${field} missing`);
    return v;
  };
  return { ppid: num(4), utime: num(14), stime: num(15), numThreads: num(20), rssPages: num(24) };
}

/** VmRSS from /proc/<pid>/status, kB; NaN when absent (kernel thread, zombie). */
export function parseVmRssKb(status: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) : Number.NaN;
}

/** UDP counters from /proc/net/snmp (the `Udp:` header/value line pair). */
export function parseUdpSnmp(text: string): Record<string, number> {
  const lines = text.split("\n").filter((l) => l.startsWith("Udp:"));
  if (lines.length < 2) return {};
  const names = lines[0]!.split(/\s+/).slice(1);
  const values = lines[1]!.split(/\s+/).slice(1).map(Number);
  const out: Record<string, number> = {};
  names.forEach((n, i) => (out[n] = values[i] ?? Number.NaN));
  return out;
}

/**
 * Per-socket drop counters from /proc/net/udp or udp6 (proc(5): the last column,
 * `drops`, counts datagrams the kernel discarded for that socket — a full receive
 * buffer, mostly), keyed by socket inode.
 */
export function parseUdpSocketDrops(text: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 13) continue;
    const inode = Number(f[9]);
    const drops = Number(f[f.length - 1]);
    if (Number.isFinite(inode) && Number.isFinite(drops)) out.set(inode, drops);
  }
  return out;
}

/** Datagrams dropped so far by the kernel on the UDP sockets `pid` holds open (receive-buffer overflows). */
export function udpSocketDrops(pid: number): number {
  const inodes = new Set<number>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(Number(m[1]));
      } catch {
        // closed between readdir and readlink
      }
    }
  } catch {
    return Number.NaN;
  }
  let drops = 0;
  for (const table of ["/proc/net/udp", "/proc/net/udp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const [inode, n] of parseUdpSocketDrops(text)) if (inodes.has(inode)) drops += n;
  }
  return drops;
}

let ticks: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`, almost always 100). */
export function clockTicksPerSecond(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** CPU seconds (user + system, all threads) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const s = parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  return (s.utime + s.stime) / clockTicksPerSecond();
}

export function procStat(pid: number): ProcStat {
  return parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
}

/**
 * `root` and every process below it, given each process's parent (pid → ppid); `root`
 * first, then breadth first. Pure.
 */
export function descendantsOf(root: number, parents: ReadonlyMap<number, number>): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parents) {
    if (pid === ppid) continue;
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const out = [root];
  const seen = new Set(out);
  for (let i = 0; i < out.length; i++) {
    for (const c of children.get(out[i]!) ?? []) {
      if (seen.has(c)) continue;
      seen.add(c);
      out.push(c);
    }
  }
  return out;
}

/**
 * CPU seconds (user + system, all threads) of `pid` and every live process below it
 * (a gateway's transcoders, say). A child that exited since the last reading takes its
 * time with it, so read over windows in which the tree is stable.
 */
export function treeCpuSeconds(pid: number): number {
  const parents = new Map<number, number>();
  const stats = new Map<number, ProcStat>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const st = parseProcStat(readFileSync(`/proc/${name}/stat`, "utf8"));
      parents.set(Number(name), st.ppid);
      stats.set(Number(name), st);
    } catch {
      // gone between readdir and read
    }
  }
  if (!stats.has(pid)) throw new Error(`no process ${pid}`);
  let ticks = 0;
  for (const p of descendantsOf(pid, parents)) {
    const st = stats.get(p);
    if (st) ticks += st.utime + st.stime;
  }
  return ticks / clockTicksPerSecond();
}

/** Resident memory, kB. */
export function rssKb(pid: number): number {
  return parseVmRssKb(readFileSync(`/proc/${pid}/status`, "utf8"));
}

/** UDP counters of the (whole) network namespace: InErrors, RcvbufErrors, SndbufErrors… */
export function udpCounters(): Record<string, number> {
  try {
    return parseUdpSnmp(readFileSync("/proc/net/snmp", "utf8"));
  } catch {
    return {};
  }
}

/** CPU seconds of several processes over a wall-clock window. */
export class CpuWindow {
  private readonly pids: Record<string, number>;
  private readonly start: Record<string, number> = {};
  private readonly t0: number;
  private readonly read: (pid: number) => number;

  /** Starts the window now. `pids`: name → pid. `tree`: count each process's descendants too. */
  constructor(pids: Record<string, number>, opts: { tree?: boolean } = {}) {
    this.pids = pids;
    this.read = opts.tree ? treeCpuSeconds : cpuSeconds;
    for (const [name, pid] of Object.entries(pids)) this.start[name] = this.safeCpu(pid);
    this.t0 = performance.now();
  }

  /** Ends the window: wall seconds and, per process, CPU seconds and the fraction of one core. */
  end(): { wallS: number; cpuS: Record<string, number>; cores: Record<string, number> } {
    const wallS = (performance.now() - this.t0) / 1000;
    const cpuS: Record<string, number> = {};
    const cores: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids)) {
      cpuS[name] = this.safeCpu(pid) - this.start[name]!;
      cores[name] = cpuS[name] / wallS;
    }
    return { wallS, cpuS, cores };
  }

  private safeCpu(pid: number): number {
    try {
      return this.read(pid);
    } catch {
      return Number.NaN;
    }
  }
}

/** Whole-machine CPU from /proc/stat: busy and total jiffies (for "how loaded was the box"). */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}
