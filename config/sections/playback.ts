/**
 * Recorder playback: the camera key `playback` (where and how its recorder replays) and the
 * gateway-wide `playback` section (limits and pacing). Every field documents its default and unit.
 */
import { z } from "zod";
import { checkUrlTemplate } from "../url-template.ts";

export const cameraPlaybackSchema = z
  .strictObject({
    /**
     * `onvif`: ONVIF Streaming replay (`Require: onvif-replay`, `Range: clock=`, `Scale`) on
     * `url` (default: the camera's own URL). `url`: a recorder that takes the start time in
     * the URL; `url` is then a template with `{start:<strftime>}` (UTC). Default `onvif`.
     */
    mode: z.enum(["onvif", "url"]).default("onvif"),
    /** The replay URL (`onvif`) or URL template (`url`, required then). Credentials as the camera's. */
    url: z
      .string()
      .refine((u) => /^rtsps?:\/\//i.test(u), { message: "must be an rtsp:// or rtsps:// URL" })
      .optional(),
    /** How far back the recorder keeps video, days (the timeline's window where the recorder cannot say). Default 30. */
    retentionDays: z.number().min(0.01).max(3650).default(30),
    /**
     * Who paces replay: `recorder` (it sends at the asked rate; the gateway re-times) or
     * `gateway` (`Rate-Control: no`: it sends as fast as it can, the gateway paces and holds
     * it back by TCP flow control). Default `recorder`.
     */
    pacing: z.enum(["recorder", "gateway"]).default("recorder"),
    /** Ask for key frames only (`Frames: intra`) at this rate and above (absolute). Default 8. */
    intraFromRate: z.number().min(1).max(32).default(8),
    /**
     * The recorder's ONVIF Recording Search service, for the timeline (what it holds and its gaps). Default none: the
     * timeline is the retention window minus the gaps playback learns. Credentials as the camera's (WS-Security digest).
     */
    search: z
      .strictObject({
        /** The search service address (`http://` or `https://`, as the recorder's GetServices lists it); contacted as given, no redirects. */
        url: z
          .string()
          .refine((u) => /^https?:\/\/[^/?#]+/i.test(u), { message: "must be an http:// or https:// URL" }),
        /** The recording to search (its RecordingToken). Default: the recorder's only recording. */
        recordingToken: z.string().min(1).max(128).optional(),
        /** One SOAP request gives up after this, ms. Default 5000. */
        timeoutMs: z.number().int().min(200).max(60_000).default(5000),
        /** An answer is reused for this long for the same span, s. Default 30. */
        cacheSeconds: z.number().int().min(0).max(3600).default(30),
      })
      .optional(),
  })
  .superRefine((p, ctx) => {
    if (p.mode === "url") {
      if (!p.url) return ctx.addIssue({ code: "custom", path: ["url"], message: "mode url needs a URL template" });
      try {
        checkUrlTemplate(p.url);
      } catch (err) {
        ctx.addIssue({ code: "custom", path: ["url"], message: (err as Error).message });
      }
    }
  });

export const playbackSection = z
  .strictObject({
    /** Playback sessions open at once on this gateway (each is one RTSP session at a recorder). Default 32. */
    maxSessions: z.number().int().min(1).max(10000).default(32),
    /** Playback sessions one user may hold. Default 4. */
    perUser: z.number().int().min(1).max(1000).default(4),
    /** Media held before the first frame after a start, seek or speed change, ms (absorbs the recorder's jitter). Default 120. */
    startDelayMs: z.number().int().min(0).max(2000).default(120),
    /** Most video packets buffered per session while the gateway paces; beyond it the recorder is held back (or packets dropped). Default 4096. */
    bufferPackets: z.number().int().min(256).max(65536).default(4096),
    /**
     * A speed change (reverse included) the recorder has not answered within this is undone: the gateway reopens the
     * recording at the previous position and speed for the same viewer and answers 409, ms. Default 3000.
     */
    speedChangeTimeoutMs: z.number().int().min(200).max(60_000).default(3000),
    /** Tries (each bounded by `rtsp.requestTimeoutMs`) to reopen the recording after such a speed change before the playback ends. Default 3. */
    reopenAttempts: z.number().int().min(1).max(20).default(3),
    /**
     * A jump in recorded time at least this long, seen in a recorder's answers (a stream that starts later than asked, a
     * frame marked as a discontinuity), is learned as a gap on the timeline, ms. Default 1000.
     */
    learnGapMinMs: z.number().int().min(100).max(3_600_000).default(1000),
  })
  .prefault({});
