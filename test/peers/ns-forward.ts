/**
 * TCP forwarders for tests that put processes in network namespaces (test/peers/cluster-netns.ts):
 * run inside a namespace (`ip netns exec <ns> node test/peers/ns-forward.ts <rule>…`), each rule
 * `<listen host>:<port>=<target>` listens there and pipes every connection to the target, either
 * `<host>:<port>` (in the same namespace), `unix:<path>` (a Unix socket, which crosses
 * namespaces: the filesystem is shared), or `balance:<host>:<port>,<host>:<port>,…`: a TCP load
 * balancer, as the README's cluster layout has in front of the nodes. It checks each target's
 * `GET /readyz` every 200 ms and sends each new connection to the first target in its order of
 * preference that answered 200 the last time; a target's death ends the connections it carried
 * (the target side closes). The order is changed on stdin: a line `order 2,3,1` (1-based indexes
 * into the target list) is answered `ok` on stdout. Prints `ready` once every rule listens; exits
 * when stdin ends.
 */
import http from "node:http";
import net from "node:net";
import readline from "node:readline";
import { splice } from "./tcp-splice.ts";

interface Target {
  host: string;
  port: number;
  healthy: boolean;
}

const HEALTH_EVERY_MS = 200;
const HEALTH_TIMEOUT_MS = 1000;

const parseHostPort = (s: string): Target => ({ host: s.slice(0, s.lastIndexOf(":")), port: Number(s.slice(s.lastIndexOf(":") + 1)), healthy: false });

/** Each balancer's targets as given, and in its order of preference now. */
const balanced: Array<{ given: readonly Target[]; order: Target[] }> = [];
const timers: NodeJS.Timeout[] = [];

/** Checks `t` now and every HEALTH_EVERY_MS; resolves after the first check. */
function watchHealth(t: Target): Promise<void> {
  const check = () =>
    new Promise<void>((done) => {
      const req = http.get({ host: t.host, port: t.port, path: "/readyz", timeout: HEALTH_TIMEOUT_MS, agent: false }, (res) => {
        t.healthy = res.statusCode === 200;
        res.resume();
        done();
      });
      req.on("timeout", () => req.destroy());
      req.on("error", () => {
        t.healthy = false;
        done();
      });
    });
  timers.push(setInterval(() => void check(), HEALTH_EVERY_MS));
  return check();
}

const servers: net.Server[] = [];
for (const rule of process.argv.slice(2)) {
  const eq = rule.indexOf("=");
  const listen = rule.slice(0, eq);
  const target = rule.slice(eq + 1);
  const colon = listen.lastIndexOf(":");
  let connect: () => net.Socket | undefined;
  if (target.startsWith("balance:")) {
    const targets = target.slice(8).split(",").map(parseHostPort);
    await Promise.all(targets.map(watchHealth));
    balanced.push({ given: [...targets], order: targets });
    connect = () => {
      const t = targets.find((x) => x.healthy);
      return t && net.connect(t.port, t.host);
    };
  } else if (target.startsWith("unix:")) connect = () => net.connect(target.slice(5));
  else {
    const t = parseHostPort(target);
    connect = () => net.connect(t.port, t.host);
  }
  const server = net.createServer((c) => {
    const up = connect();
    if (!up) return void c.destroy(); // no healthy target: refused, as a balancer with none would
    splice(c, up);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(listen.slice(colon + 1)), listen.slice(0, colon), () => resolve());
  });
  servers.push(server);
}
process.stdout.write("ready\n");
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const m = /^order ([\d,]+)$/.exec(line.trim());
  if (!m) return;
  const order = m[1]!.split(",").map((i) => Number(i) - 1);
  for (const b of balanced) b.order.splice(0, b.order.length, ...order.flatMap((i) => b.given[i] ?? []), ...b.given.filter((_, i) => !order.includes(i)));
  process.stdout.write("ok\n");
});
process.stdin.on("end", () => {
  for (const s of servers) s.close();
  for (const t of timers) clearInterval(t);
  process.exit(0);
});
