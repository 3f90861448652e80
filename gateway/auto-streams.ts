/**
 * A live viewer's choice of stream (WHEP `?stream=`, PATCH `{"stream": …}`) as the SFU gets
 * it: its camera's streams as its ladder and whether it adapts to its network (Auto). While
 * a viewer is on Auto, the camera's substream is kept pulled (`media.autoWarmSubstream`), so
 * a step down from the main stream starts from the substream's cached keyframe at once
 * rather than after an RTSP set-up and a keyframe wait (a second or more, while the main
 * stream keeps filling a link that cannot carry it). Still one pull per stream whatever the
 * number of viewers, released with the camera's last Auto viewer.
 */
import type { ViewerHandle } from "../sfu/api.ts";
import type { CameraRegistry } from "./cameras.ts";

/** `h265`: the viewer receives H.265 (its ladder holds only the streams it can play). */
export type StreamChoice = (viewer: ViewerHandle, camera: string, stream: string, h265?: boolean) => void;

export function autoStreamChoice(registry: Pick<CameraRegistry, "streamSources" | "holdSubstream">, o: { warmSubstream: boolean }): StreamChoice {
  const holds = new WeakMap<ViewerHandle, () => void>();
  return (viewer, camera, stream, h265) => {
    const auto = stream === "auto";
    viewer.setStreams(registry.streamSources(camera, h265), auto);
    const held = holds.get(viewer);
    if (auto && o.warmSubstream && viewer.state !== "closed") {
      if (held) return;
      const release = registry.holdSubstream(camera);
      if (!release) return;
      holds.set(viewer, release);
      viewer.once("closed", release);
    } else if (held) {
      holds.delete(viewer);
      held();
    }
  };
}
