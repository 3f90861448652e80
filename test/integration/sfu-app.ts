/**
 * Test harness for SFU integration tests: an Sfu on 127.0.0.1 behind an express app
 * with the WHEP router, on an ephemeral HTTP port.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { randomInt } from "node:crypto";
import express from "express";
import { silentLogger } from "../../config/log.ts";
import { cameraId } from "../../config/ids.ts";
import { whepRouter, type WhepDeps } from "../../gateway/http/whep.ts";
import { Sfu, type SfuOptions } from "../../sfu/sfu.ts";

export interface TestApp {
  sfu: Sfu;
  /** http://127.0.0.1:<port> */
  base: string;
  whep(camera: string): string;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A random 300-port ICE range, so parallel test files rarely probe the same ports. */
export function testPortRange(): [number, number] {
  const first = randomInt(20000, 60000);
  return [first, first + 299];
}

export async function startTestApp(
  opts: { cameras?: string[]; sfu?: Partial<SfuOptions>; whep?: Partial<WhepDeps> } = {},
): Promise<TestApp> {
  const cameras = new Set(opts.cameras ?? ["cam1"]);
  const sfu = new Sfu({
    log: silentLogger,
    icePortRange: testPortRange(),
    bindAddress: "127.0.0.1",
    nackHistory: 512,
    viewerQueuePackets: 1024,
    ...opts.sfu,
  });
  for (const c of cameras) sfu.source(cameraId(c));
  const app = express();
  app.use(
    "/whep",
    whepRouter({
      sfu,
      cameraExists: (id) => cameras.has(id),
      iceServers: () => [],
      log: silentLogger,
      ...opts.whep,
    }),
  );
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await sfu.close("test done");
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    })());
  return { sfu, base, whep: (c) => `${base}/whep/${c}`, close, [Symbol.asyncDispose]: close };
}
