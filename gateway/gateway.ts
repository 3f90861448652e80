/**
 * Starts and stops a whole gateway: demo recorder (when configured), SFU, camera
 * ingest, HTTP front door. `await using gw = await startGateway({ config })`.
 *
 * Order matters on close: stop accepting requests, end viewers (SFU), stop pulls,
 * then the demo recorder, so nothing logs a spurious failure while shutting down.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import express from "express";
import type { Config, CameraConfig } from "../config/schema.ts";
import { createLogger, type Logger } from "../config/log.ts";
import { Sfu } from "../sfu/sfu.ts";
import { CameraRegistry } from "./cameras.ts";
import { startDemoRecorder, type DemoRecorder } from "./demo/recorder.ts";
import { apiRouter } from "./http/api.ts";
import { errorHandler } from "./http/errors.ts";
import { whepRouter } from "./http/whep.ts";

const WEB_ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "web");

export interface GatewayOptions {
  config: Readonly<Config>;
  log?: Logger;
}

export interface Gateway {
  /** Base URL of the front door, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly httpPort: number;
  readonly sfu: Sfu;
  readonly cameras: CameraRegistry;
  /** The built-in demo recorder, when it runs. */
  readonly demo: DemoRecorder | undefined;
  close(reason?: string): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { config } = opts;
  const log = opts.log ?? createLogger({ level: config.log.level, format: config.log.format });
  const cleanups: Array<() => Promise<void> | void> = [];
  const closeAll = async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log.warn("error while closing", { err });
      }
    }
  };

  try {
    let cameras: readonly CameraConfig[] = config.cameras;
    let demo: DemoRecorder | undefined;
    const demoWanted = config.demo.enabled === true || (config.demo.enabled === "auto" && cameras.length === 0);
    if (demoWanted) {
      demo = await startDemoRecorder({ host: "127.0.0.1", port: config.demo.rtspPort, log: log.child({ component: "demo" }) });
      cleanups.push(() => demo!.close());
      cameras = [
        ...cameras,
        { id: "demo", name: "Demo camera", url: demo.url, transport: "tcp", alwaysOn: false, groups: ["demo"], tlsInsecure: false },
      ];
      log.info("demo recorder running", { url: demo.url });
    }

    const bindAddress = config.media.bindAddress ?? config.server.host;
    const sfu = new Sfu({
      log: log.child({ component: "sfu" }),
      icePortRange: config.media.icePortRange,
      bindAddress,
      announcedAddress: config.media.announcedAddress,
      nackHistory: config.media.nackHistory,
      viewerQueuePackets: config.media.viewerQueuePackets,
    });
    cleanups.push(() => sfu.close("gateway closing"));

    const registry = new CameraRegistry(cameras, { rtsp: config.rtsp, sfu, log: log.child({ component: "ingest" }) });
    cleanups.push(() => registry.close());

    const app = express();
    app.disable("x-powered-by");
    app.set("trust proxy", false);
    app.get("/healthz", (_req, res) => res.json({ ok: true }));
    app.use("/api", apiRouter({ cameras: registry, canSee: () => true }));
    app.use(
      "/whep",
      whepRouter({
        sfu,
        cameraExists: (id) => registry.has(id),
        iceServers: () => [],
        log: log.child({ component: "whep" }),
      }),
    );
    app.use(express.static(WEB_ROOT, { index: "index.html", fallthrough: true }));
    app.use(errorHandler(log));

    const server = http.createServer(app);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.server.port, config.server.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    );
    const port = (server.address() as AddressInfo).port;
    const host = config.server.host.includes(":") ? `[${config.server.host}]` : config.server.host;
    const url = config.server.publicUrl ?? `http://${host}:${port}`;

    let closing: Promise<void> | undefined;
    const close = (reason = "closed") => {
      closing ??= (async () => {
        log.info("gateway closing", { reason });
        await closeAll();
      })();
      return closing;
    };
    return {
      url,
      httpPort: port,
      sfu,
      cameras: registry,
      demo,
      close,
      [Symbol.asyncDispose]: () => close("disposed"),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
