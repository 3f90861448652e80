/**
 * Debian's Firefox ESR as a real WebRTC viewer, driven by puppeteer-core over WebDriver BiDi.
 *
 * Measured with Firefox ESR 153 (`apt-get install firefox-esr`) and puppeteer-core 25:
 *
 * - Driving: `puppeteer.launch({ browser: "firefox" })` speaks WebDriver BiDi; no geckodriver
 *   needed. Start-up takes 3–6 s here. `evaluateOnNewDocument` (BiDi preload scripts),
 *   `waitForFunction`, clicks, keys, `console`/`pageerror` events all work, so pages
 *   opened here get the same RTCPeerConnection registry as chromium.ts and that file's
 *   stats and pixel helpers (waitForDecodedFrames, sampleVideoPixels, …) work on them.
 *   BiDi `permissions.setPermission` refuses "camera" ("currently unsupported").
 *
 * - H.264: Firefox puts H.264 in an offer only when it has an encoder and a decoder for
 *   it: Cisco's OpenH264 plugin (GMP), which a real Firefox downloads from Mozilla soon
 *   after its first start, or "hardware" H.264. Offline (and puppeteer turns GMP updates
 *   off) a fresh profile offers only VP8, VP9 and AV1, and the gateway answers 400 "no
 *   common video codec". Three prefs stand in for the plugin: `media.webrtc.hw.h264.enabled`
 *   with `gfx.blacklist.webrtc.hw.acceleration.h264 = 1` (FEATURE_STATUS_OK: the value a
 *   downloaded graphics blocklist would write) make Firefox offer H.264 exactly as it does
 *   with OpenH264 (42e01f and 42001f, packetization-mode 1 and 0), and
 *   `media.navigator.mediadatadecoder_h264_enabled` decodes it with the platform decoder,
 *   i.e. the system's FFmpeg (libavcodec59, from Debian's ffmpeg package). Everything else
 *   is Firefox's own: ICE, DTLS-SRTP, RTP depacketizing and jitter buffer, getStats,
 *   <video> rendering, autoplay policy. Only the H.264 decoder library differs from a
 *   user's Firefox (FFmpeg instead of OpenH264).
 *
 * - ICE on loopback: a page without camera or microphone permission gathers "default
 *   address only" (the interface of the default route; the pref
 *   `media.peerconnection.ice.default_address_only` can only add to that), and never
 *   loopback. On this host that is 192.0.2.2, which still reaches a gateway on 127.0.0.1,
 *   but in a network namespace holding only `lo` Firefox gathered no candidate at all.
 *   `permissions.default.camera`/`.microphone = 1` (every site counts as allowed; nothing
 *   calls getUserMedia) lift that, and `media.peerconnection.ice.loopback` then offers
 *   127.0.0.1 and ::1 host candidates: 127.0.0.1 ↔ 127.0.0.1, as with Chromium, worked in
 *   the `lo`-only namespace. `media.peerconnection.ice.obfuscate_host_addresses = false`
 *   keeps plain IPs rather than mDNS names.
 *
 * - Offers: with `bundlePolicy: "max-bundle"` Firefox marks every m-section after the
 *   first `a=bundle-only` with port 0 (RFC 8843 §6); Chromium never does. web/whep.js
 *   falls back to "balanced" for such browsers (see there).
 *
 * - Autoplay: Firefox's default policy is kept (muted video may autoplay, sound needs a
 *   user gesture), so tests see what users see. Headless Firefox has no GPU: decoding
 *   and compositing are in software.
 *
 * Each browser gets a fresh profile in a temporary directory, removed on close.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import puppeteer from "puppeteer-core";
import type { Browser, Page } from "puppeteer-core";
import type { Logger } from "../../config/log.ts";
import { silentLogger } from "../../config/log.ts";
import { openRecordedPage } from "./browser-page.ts";

export { pageErrors } from "./browser-page.ts";

/** Preferences that make headless Firefox a usable H.264 WebRTC viewer on loopback (see above). */
export const FIREFOX_PREFS: Readonly<Record<string, boolean | number | string>> = Object.freeze({
  // H.264 without the OpenH264 download: offered as "hardware", decoded by FFmpeg.
  "media.webrtc.hw.h264.enabled": true,
  "gfx.blacklist.webrtc.hw.acceleration.h264": 1,
  "media.navigator.mediadatadecoder_h264_enabled": true,
  // ICE: all interfaces (not only the default route's), loopback included, plain IPs.
  "permissions.default.camera": 1,
  "permissions.default.microphone": 1,
  "media.peerconnection.ice.loopback": true,
  "media.peerconnection.ice.obfuscate_host_addresses": false,
});

export interface FirefoxOptions {
  /** Browser binary. Default: $FIREFOX_PATH or /usr/bin/firefox-esr. */
  executablePath?: string;
  /** More preferences, over FIREFOX_PREFS. */
  prefs?: Record<string, boolean | number | string>;
  /** Page viewport, CSS px. Default 1280×720. */
  viewport?: { width: number; height: number };
  /** Page console errors and uncaught exceptions go here (debug level). */
  log?: Logger;
  /** Give up on a browser.close() that does not finish, ms. Default 5000. */
  closeTimeoutMs?: number;
}

export interface Firefox {
  browser: Browser;
  /** A new tab that records its RTCPeerConnections; navigates to `url` when given (waits for `load`). */
  newPage(url?: string): Promise<Page>;
  /** Close the browser (every process of it) and remove its profile directory. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}


/** Launch headless Firefox with a fresh profile in a temporary directory. */
export async function launchFirefox(opts: FirefoxOptions = {}): Promise<Firefox> {
  const log = opts.log ?? silentLogger;
  const profile = await fs.mkdtemp(path.join(os.tmpdir(), "gatehouse-firefox-"));
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      browser: "firefox",
      executablePath: opts.executablePath ?? process.env["FIREFOX_PATH"] ?? "/usr/bin/firefox-esr",
      headless: true,
      userDataDir: profile,
      extraPrefsFirefox: { ...FIREFOX_PREFS, ...(opts.prefs ?? {}) },
      defaultViewport: opts.viewport ?? { width: 1280, height: 720 },
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      protocolTimeout: 30_000,
      // Firefox takes far longer than Chromium to come up: 19 s measured at a load average of 17
      // on two cores (Chromium: 4 s), against puppeteer's default limit of 30 s.
      timeout: 90_000,
    });
  } catch (err) {
    await fs.rm(profile, { recursive: true, force: true, maxRetries: 3, retryDelay: 100 });
    throw err;
  }

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const proc = browser.process();
      const exited =
        proc && proc.exitCode === null && proc.signalCode === null
          ? new Promise<void>((resolve) => proc.once("exit", () => resolve()))
          : Promise.resolve();
      try {
        await Promise.race([browser.close(), new Promise((r) => setTimeout(r, opts.closeTimeoutMs ?? 5000).unref())]);
      } catch {
        // already gone
      }
      if (proc?.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
        // Puppeteer starts Firefox as a process-group leader: end the group (content, socket, RDD processes).
        try {
          process.kill(-proc.pid, "SIGKILL");
        } catch {
          proc.kill("SIGKILL");
        }
      }
      await exited;
      await fs.rm(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    })();
    return closing;
  };

  const newPage = (url?: string): Promise<Page> => openRecordedPage(browser, log, url);

  return { browser, newPage, close, [Symbol.asyncDispose]: close };
}

