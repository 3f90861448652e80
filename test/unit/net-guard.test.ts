/**
 * The test network guard itself (test/guard/net-guard.ts): what it refuses and records, what
 * it lets through, in this thread, in worker threads (file and eval), in Node child
 * processes and inside a network namespace a test makes.
 */
import { spawnSync } from "node:child_process";
import dgram from "node:dgram";
import dns from "node:dns";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { Worker } from "node:worker_threads";
import { afterAll, describe, expect, it } from "vitest";
import { fastPath } from "../../sfu/native/index.ts";
import { addressAllowed, expectRefusals, GUARD_DIR_ENV, PRELOAD_PATH } from "../guard/net-guard.ts";
import { readRefusals } from "../guard/records.ts";

const scratch = mkdtempSync(path.join(tmpdir(), "net-guard-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A fresh directory for refusals recorded by a thread or child process of this test. */
function privateDir(name: string): string {
  const d = path.join(scratch, name);
  rmSync(d, { recursive: true, force: true });
  spawnSync("mkdir", ["-p", d]);
  return d;
}

function settle(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    s.once("connect", () => resolve("connected"));
    s.once("error", (e: NodeJS.ErrnoException) => resolve(String(e.code)));
  });
}

describe("the test network guard", () => {
  it("is preloaded in this test process", () => {
    expect(process.env.NODE_OPTIONS).toContain(`--require=${PRELOAD_PATH}`);
    expect(dns.lookup.name).toBe("guardedLookup");
  });

  it("refuses and records name lookups, whatever the API", async () => {
    const refused = await expectRefusals(async () => {
      await expect(dns.promises.lookup("stun.l.google.com")).rejects.toMatchObject({ code: "ENOTFOUND" });
      await expect(new Promise((_, reject) => dns.lookup("example.com", { family: 4 }, (err) => reject(err)))).rejects.toMatchObject({ code: "ENOTFOUND" });
      await expect(dns.promises.resolve4("example.com")).rejects.toMatchObject({ code: "ENOTFOUND" });
      await expect(new dns.promises.Resolver().resolveTxt("example.com")).rejects.toMatchObject({ code: "ENOTFOUND" });
      await expect(new Promise((_, reject) => new dns.Resolver().resolve6("example.com", (err) => reject(err)))).rejects.toMatchObject({ code: "ENOTFOUND" });
      await expect(dns.promises.reverse("127.0.0.1")).rejects.toMatchObject({ code: "ENOTFOUND" });
      // Names reached through connect: net, TLS and HTTP (fetch goes through net as well).
      expect(await settle(net.connect(443, "example.com"))).toBe("ENOTFOUND");
      expect(await settle(tls.connect(443, "example.org"))).toBe("ENOTFOUND");
      await expect(fetch("http://example.net/")).rejects.toThrow();
    });
    expect(refused.map((r) => `${r.kind} ${r.target}`)).toEqual([
      "lookup stun.l.google.com",
      "lookup example.com",
      "lookup example.com",
      "lookup example.com",
      "lookup example.com",
      "lookup 127.0.0.1",
      "lookup example.com:443",
      "lookup example.org:443",
      "lookup example.net:80",
    ]);
    // The record points at the caller (fetch's own frames are Node's).
    expect(refused.slice(0, -1).every((r) => r.stack.includes("net-guard.test.ts"))).toBe(true);
  });

  it("refuses connects and datagrams to addresses off this host, including multicast", async () => {
    const udp = dgram.createSocket("udp4");
    await new Promise<void>((r) => udp.bind(0, "127.0.0.1", r));
    const refused = await expectRefusals(async () => {
      expect(await settle(net.connect(80, "192.0.2.1"))).toBe("ECONNREFUSED");
      expect(await settle(net.connect({ port: 80, host: "2001:db8::1" }))).toBe("ECONNREFUSED");
      await new Promise<void>((resolve) => http.get("http://198.51.100.7/").once("error", () => resolve()));
      const sendErr = await new Promise<Error | null>((r) => udp.send(Buffer.from("x"), 5353, "224.0.0.251", (e) => r(e)));
      expect(sendErr).toMatchObject({ code: "EPERM" });
      const sendErr2 = await new Promise<Error | null>((r) => udp.send(Buffer.from("x"), 0, 1, 3478, "203.0.113.9", (e) => r(e)));
      expect(sendErr2).toMatchObject({ code: "EPERM" });
    });
    udp.close();
    expect(refused.map((r) => `${r.kind} ${r.target} ${r.via}`)).toEqual([
      "connect 192.0.2.1:80 net.Socket#connect",
      "connect 2001:db8::1:80 net.Socket#connect",
      "connect 198.51.100.7:80 net.Socket#connect",
      "send 224.0.0.251:5353 dgram.Socket#send",
      "send 203.0.113.9:3478 dgram.Socket#send",
    ]);
  });

  it("lets loopback traffic through untouched", async () => {
    const server = net.createServer((s) => {
      s.on("error", () => {}); // the client hangs up at once
      s.end("hi");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    const rx = dgram.createSocket("udp4");
    await new Promise<void>((r) => rx.bind(0, "127.0.0.1", r));
    const refused = await expectRefusals(async () => {
      expect(await dns.promises.lookup("127.0.0.1")).toEqual({ address: "127.0.0.1", family: 4 });
      const s = net.connect(port, "127.0.0.1");
      expect(await settle(s)).toBe("connected");
      s.destroy();
      const got = new Promise<string>((r) => rx.once("message", (m) => r(m.toString())));
      const tx = dgram.createSocket("udp4");
      tx.send("ping", rx.address().port, "127.0.0.1");
      expect(await got).toBe("ping");
      tx.close();
    });
    expect(refused).toEqual([]);
    rx.close();
    server.close();
  });

  it("lets through the exact addresses of this host's own interfaces, never their neighbours", () => {
    const own = Object.values(networkInterfaces())
      .flatMap((l) => l ?? [])
      .filter((a) => !a.internal && a.family === "IPv4");
    for (const a of own) {
      expect(addressAllowed(a.address)).toBe(true);
      // The next address of the same subnet is another host: refused.
      const octets = a.address.split(".").map(Number);
      octets[3] = octets[3] === 254 ? 253 : octets[3]! + 1;
      const neighbour = octets.join(".");
      if (!own.some((o) => o.address === neighbour)) expect(addressAllowed(neighbour)).toBe(false);
    }
    expect(addressAllowed("192.0.2.44")).toBe(own.some((o) => o.address === "192.0.2.44"));
  });

  it("stops the native fast path's datagrams to a refused address, and only those", async () => {
    expect(fastPath, "the native addon is built on this machine").toBeDefined();
    const fp = fastPath!;
    const rx = dgram.createSocket("udp4");
    await new Promise<void>((r) => rx.bind(0, "127.0.0.1", r));
    const [fd] = fp.udpOpen(4, "127.0.0.1", 0, 65536);
    const got = new Promise<string>((r) => rx.once("message", (m) => r(m.toString())));
    const results = new Int32Array(2);
    const refused = await expectRefusals(async () => {
      const fds = Int32Array.of(fd, fd);
      const sent = fp.sendBatch(fds, [Buffer.from("off"), Buffer.from("on")], Int32Array.of(3, 2), [fp.sockaddr("192.0.2.44", 9), fp.sockaddr("127.0.0.1", rx.address().port)], 2, results);
      expect(fds[0]).toBe(fd); // the caller's arrays are left alone
      expect(sent).toBeLessThan(2);
    });
    expect(await got).toBe("on");
    expect(results[0]).toBeLessThan(0);
    expect(results[1]).toBe(2);
    expect(refused.map((r) => `${r.target} ${r.via}`)).toEqual(["192.0.2.44:9 native.sendBatch"]);
    fp.closeFd(fd);
    rx.close();
  });

  it("is in every worker thread, eval workers and workers given their own execArgv and env included", async () => {
    const dir = privateDir("workers");
    const code = `require("node:dns").lookup("from-eval-worker.example", () => require("node:worker_threads").parentPort.postMessage("done"));`;
    const w = new Worker(code, { eval: true, execArgv: [], env: { [GUARD_DIR_ENV]: dir } });
    await new Promise((r) => w.once("message", r));
    await w.terminate();
    expect(readRefusals(dir).map((r) => `${r.target} ${r.thread > 0}`)).toEqual(["from-eval-worker.example true"]);
  });

  it("is in Node child processes", () => {
    const dir = privateDir("child");
    const r = spawnSync(process.execPath, ["-e", `require("node:dns").lookup("from-child.example", (e) => process.stdout.write(e.code))`], {
      env: { ...process.env, [GUARD_DIR_ENV]: dir },
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(r.stdout).toBe("ENOTFOUND");
    expect(readRefusals(dir).map((x) => x.target)).toEqual(["from-child.example"]);
  });

  it("allows a namespace's own addresses only inside a namespace the test made", () => {
    const dir = privateDir("netns");
    // Inside: 10.x is the namespace's own business (the kernel answers, unreachable); the internet and names stay refused.
    const script = `
      const dgram = require("node:dgram");
      const s = dgram.createSocket("udp4");
      const out = [];
      const step = (host, next) => s.send("x", 9, host, (e) => { out.push(host + "=" + (e ? e.code : "sent")); next(); });
      step("10.1.2.3", () => step("8.8.8.8", () => require("node:dns").lookup("in-namespace.example", (e) => {
        out.push("name=" + e.code); s.close(); process.stdout.write(out.join(" "));
      })));`;
    const r = spawnSync("unshare", ["-rn", "sh", "-c", `ip link set lo up && exec "${process.execPath}" -e '${script}'`], {
      env: { ...process.env, [GUARD_DIR_ENV]: dir },
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("10.1.2.3=ENETUNREACH 8.8.8.8=EPERM name=ENOTFOUND");
    const refused = readRefusals(dir);
    expect(refused.map((x) => `${x.target} ${x.hostNamespace}`)).toEqual(["8.8.8.8:9 false", "in-namespace.example false"]);
  });

  it("refuses the same namespaced address in the host's namespace", async () => {
    const s = dgram.createSocket("udp4");
    const refused = await expectRefusals(async () => {
      const e = await new Promise<Error | null>((r) => s.send("x", 9, "10.1.2.3", (err) => r(err)));
      expect(e).toMatchObject({ code: "EPERM" });
    });
    s.close();
    expect(refused.map((r) => r.target)).toEqual(["10.1.2.3:9"]);
  });
});
