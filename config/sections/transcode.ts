/**
 * Transcoding with the system's ffmpeg (gateway/transcode/): AAC sound to Opus, and H.265
 * video to H.264 for cameras configured for it. One ffmpeg per camera and codec, only while
 * someone watches, whatever the number of viewers.
 *
 * `transcodeSection` is the gateway-wide part (`transcode:` at the top level);
 * `cameraTranscode` is a camera's own (`cameras[].transcode`).
 */
import { z } from "zod";

export const transcodeSection = z
  .strictObject({
    /**
     * The ffmpeg executable: a name looked up on PATH or an absolute path. Default `ffmpeg`
     * (Debian: `apt install ffmpeg`). When it cannot be found, AAC sound and H.265 transcodes
     * are reported on the camera's tile with what to install, and the rest of the camera plays.
     */
    ffmpegPath: z.string().min(1).default("ffmpeg"),
    /** First restart delay of a failed ffmpeg, ms, doubling up to `restartMaxMs`. Default 500. */
    restartMinMs: z.number().int().min(50).max(60_000).default(500),
    /** Cap of the restart delay, ms. Default 30000. */
    restartMaxMs: z.number().int().min(100).max(600_000).default(30_000),
    /** An ffmpeg that ran this long without failing resets the restart delay, ms. Default 10000. */
    stableMs: z.number().int().min(100).max(600_000).default(10_000),
    /** Seconds an ffmpeg keeps running after the camera's last viewer left (a page reload does not restart it). Default 5. */
    idleStopSeconds: z.number().min(0).max(3600).default(5),
    /** Opus bitrate of AAC sound converted to Opus, kbit/s. Default 48. */
    opusBitrateKbps: z.number().int().min(6).max(510).default(48),
    /**
     * AAC sound converted to Opus, and that camera's picture with it, leave the gateway a steady
     * delay after they reached it, at most this long, ms: ffmpeg returns sound in bursts, and a
     * steady delay on both keeps the browser's buffers and lip sync steady. The delay is two AAC
     * frames and one 20 ms Opus frame plus `aacDelayMarginMs` (ffmpeg's lag on a quiet machine), raised, never lowered,
     * when sound keeps going out late; sound later than it is sent as it comes. Default 400.
     */
    aacDelayMs: z.number().int().min(0).max(2000).default(400),
    /** Added to two AAC frames and an Opus frame (and to ffmpeg's measured lag when the delay is raised) to make the delay of converted sound and its picture, ms. Default 40. */
    aacDelayMarginMs: z.number().int().min(0).max(1000).default(40),
    /** Last lines of an ffmpeg's stderr kept for logs and the camera's status. Default 20. */
    stderrLines: z.number().int().min(1).max(1000).default(20),
    /** Encoded input waiting for a stalled ffmpeg, bytes; beyond it input is dropped and counted. Default 4 MiB. */
    maxPendingBytes: z.number().int().min(65_536).max(256 * 1024 * 1024).default(4 * 1024 * 1024),
  })
  .prefault({});

export const cameraTranscode = z
  .strictObject({
    /**
     * AAC sound (RTP MPEG4-GENERIC or MP4A-LATM): `opus` converts it to Opus with ffmpeg (once per
     * camera, while watched); `off` leaves the sound out. Default `opus`.
     */
    aac: z.enum(["opus", "off"]).default("opus"),
    /**
     * H.265 video for browsers that cannot decode it: `h264` transcodes with ffmpeg (libx264);
     * `off` shows the reason on the tile instead. Default `off` (a transcode costs about a core per 1080p camera).
     */
    h265: z.enum(["h264", "off"]).default("off"),
    /**
     * H.265 video not converted (`h265: off`) is pulled all the same and passed through to
     * viewers whose browser offers H.265 (RFC 7798: Safari, Chrome with hardware decoding);
     * the others get the camera's H.264 stream, or the reason in words when the camera has
     * nothing else for them. Default true; false leaves the H.265 stream unpulled (an idle
     * camera with nothing else then says it has nothing a browser can play). A camera
     * converted to H.264 passes its H.265 through to such viewers whatever this says.
     */
    h265Passthrough: z.boolean().default(true),
    /** Bitrate of the H.264 a transcode produces, kbit/s. Default 2000. */
    bitrateKbps: z.number().int().min(100).max(50_000).default(2000),
    /** Largest width of the transcoded picture, pixels (scaled down keeping the aspect ratio). Default 1920. */
    maxWidth: z.number().int().min(16).max(8192).default(1920),
    /** Largest height of the transcoded picture, pixels. Default 1080. */
    maxHeight: z.number().int().min(16).max(8192).default(1080),
    /** Keyframe interval of the transcoded H.264, seconds. Default 2. */
    keyframeSeconds: z.number().min(0.2).max(60).default(2),
    /** libx264 preset (speed against size). Default `veryfast`. */
    preset: z.enum(["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]).default("veryfast"),
  })
  .prefault({});

/** A camera's `transcode` with every default filled in (the key itself is optional). */
export function cameraTranscodeOf(camera: { transcode?: CameraTranscodeConfig | undefined }): CameraTranscodeConfig {
  return camera.transcode ?? cameraTranscode.parse({});
}

export type TranscodeConfig = z.infer<typeof transcodeSection>;
export type CameraTranscodeConfig = z.infer<typeof cameraTranscode>;
