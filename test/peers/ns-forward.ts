/**
 * TCP forwarders for tests that put processes in network namespaces (test/peers/cluster-netns.ts):
 * run inside a namespace (`ip netns exec <ns> node test/peers/ns-forward.ts <rule>…`), each rule
 * `<listen host>:<port>=<target>` listens there and pipes every connection to the target, either
 * `<host>:<port>` (in the same namespace) or `unix:<path>` (a Unix socket, which crosses
 * namespaces: the filesystem is shared). Prints `ready` once every rule listens; exits when stdin ends.
 */
import net from "node:net";

const servers: net.Server[] = [];
for (const rule of process.argv.slice(2)) {
  const eq = rule.indexOf("=");
  const listen = rule.slice(0, eq);
  const target = rule.slice(eq + 1);
  const colon = listen.lastIndexOf(":");
  const server = net.createServer((c) => {
    const up = target.startsWith("unix:") ? net.connect(target.slice(5)) : net.connect(Number(target.slice(target.lastIndexOf(":") + 1)), target.slice(0, target.lastIndexOf(":")));
    c.pipe(up).pipe(c);
    const end = () => {
      c.destroy();
      up.destroy();
    };
    c.on("error", end);
    up.on("error", end);
    c.on("close", end);
    up.on("close", end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(listen.slice(colon + 1)), listen.slice(0, colon), () => resolve());
  });
  servers.push(server);
}
process.stdout.write("ready\n");
process.stdin.resume();
process.stdin.on("end", () => {
  for (const s of servers) s.close();
  process.exit(0);
});
