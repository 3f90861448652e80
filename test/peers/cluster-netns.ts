/**
 * Network namespaces for a cluster test: one per gateway node and one for the browser, joined by
 * a bridge in a further namespace (one L2 segment, 10.216.<n>.0/24: node i at .1i, the browser at
 * .100). Nothing is added to the host's own namespace; the host's services the nodes need (Redis,
 * the recorder: TCP) are reached through Unix sockets, which cross namespaces, and TCP forwarders
 * inside each namespace (test/peers/ns-forward.ts). Closing deletes the namespaces (and the veth
 * pairs and the bridge with them). Needs root (the tests run as root).
 *
 *   await using net = await createClusterNetns(3);
 *   const path = await net.exposeHost(redis.port);                  // host 127.0.0.1:port as a Unix socket
 *   await net.forward(net.node(1).ns, [`127.0.0.1:${redis.port}=unix:${path}`]);
 *   spawn("ip", ["netns", "exec", net.node(1).ns, …]);
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const FORWARDER = new URL("./ns-forward.ts", import.meta.url).pathname;

export interface ClusterNetns extends AsyncDisposable {
  /** Node i (1-based): its namespace and address on the shared segment. */
  node(i: number): { ns: string; address: string };
  /** The browser's namespace and address. */
  readonly client: { ns: string; address: string };
  /** A Unix socket (in a directory of this object) that reaches the host's 127.0.0.1:`port`. */
  exposeHost(port: number): Promise<string>;
  /** TCP forwarders inside `ns` (rules as test/peers/ns-forward.ts takes them); they live until close. */
  forward(ns: string, rules: string[]): Promise<void>;
  /** An executable that runs `binary` with its arguments inside `ns` (for tools that take a path). */
  wrapper(ns: string, binary: string): Promise<string>;
  close(): Promise<void>;
}

export async function createClusterNetns(nodes: number): Promise<ClusterNetns> {
  const tag = randomBytes(3).toString("hex");
  const net24 = `10.216.${randomInt(1, 254)}`;
  const lan = `gh-${tag}-lan`;
  const client = { ns: `gh-${tag}-c`, address: `${net24}.100` };
  const nodeList = Array.from({ length: nodes }, (_, k) => ({ ns: `gh-${tag}-n${k + 1}`, address: `${net24}.${11 + k}` }));
  const dir = await mkdtemp(path.join(tmpdir(), "gatehouse-cluster-netns-"));
  const ip = (...args: string[]) => run("ip", args);
  const children: ChildProcess[] = [];
  const servers: net.Server[] = [];
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const c of children) {
      c.stdin?.end();
      if (c.exitCode === null) c.kill("SIGKILL");
    }
    for (const s of servers) s.close();
    for (const ns of [lan, client.ns, ...nodeList.map((n) => n.ns)]) await ip("netns", "del", ns).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await ip("netns", "add", lan);
    await ip("-n", lan, "link", "add", "br0", "type", "bridge");
    await ip("-n", lan, "link", "set", "br0", "up");
    for (const [k, m] of [...nodeList, client].entries()) {
      await ip("netns", "add", m.ns);
      await ip("-n", m.ns, "link", "set", "lo", "up");
      const inner = `gh${tag}i${k}`;
      const outer = `gh${tag}o${k}`;
      await ip("link", "add", inner, "netns", m.ns, "type", "veth", "peer", "name", outer, "netns", lan);
      await ip("-n", lan, "link", "set", outer, "master", "br0");
      await ip("-n", lan, "link", "set", outer, "up");
      await ip("-n", m.ns, "addr", "add", `${m.address}/24`, "dev", inner);
      await ip("-n", m.ns, "link", "set", inner, "up");
    }
  } catch (err) {
    await close();
    throw err;
  }
  let socketNo = 0;
  return {
    node: (i) => nodeList[i - 1]!,
    client,
    async exposeHost(port) {
      const file = path.join(dir, `host-${port}-${socketNo++}.sock`);
      const server = net.createServer((c) => {
        const up = net.connect(port, "127.0.0.1");
        c.pipe(up).pipe(c);
        const end = () => {
          c.destroy();
          up.destroy();
        };
        for (const s of [c, up]) {
          s.on("error", end);
          s.on("close", end);
        }
      });
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(file, () => resolve());
      });
      servers.push(server);
      return file;
    },
    async forward(ns, rules) {
      const c = spawn("ip", ["netns", "exec", ns, process.execPath, FORWARDER, ...rules], { stdio: ["pipe", "pipe", "pipe"] });
      children.push(c);
      let err = "";
      c.stderr!.on("data", (d: Buffer) => (err += d.toString()));
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`forwarder in ${ns} did not start: ${err}`)), 20_000);
        c.stdout!.once("data", () => {
          clearTimeout(t);
          resolve();
        });
        c.once("exit", (code) => {
          clearTimeout(t);
          reject(new Error(`forwarder in ${ns} exited ${code}: ${err}`));
        });
      });
    },
    async wrapper(ns, binary) {
      const file = path.join(dir, `${path.basename(binary)}-${ns}`);
      await writeFile(file, `#!/bin/sh\nexec ip netns exec ${ns} ${binary} "$@"\n`);
      await chmod(file, 0o755);
      return file;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
