#!/usr/bin/python3
"""A real ONVIF replay recorder for tests: GStreamer's RTSPOnvifServer and RTSPOnvifMediaFactory
(replay support on) serving a synthetic recording through x264enc, rtph264pay and rtponviftimestamp
(the ONVIF RTP header extension with each frame's absolute NTP time).

The recording runs from --base-ms (Unix ms) for --duration-s seconds at --fps, minus the gaps given
with --gap START_MS:END_MS (Unix ms, repeatable). Each frame shows its own index since --base-ms as
BITS pixel blocks along the top of the picture (16 px wide, 32 rows tall, most significant bit first,
white = 1, black = 0): a browser test reads a decoded frame's recorded time from its pixels, no OCR.
Recorded time of frame i = base + i * 1000 / fps.

Seeking (Range: clock=...) lands on the frame at or after the asked time (the encoder starts with a
key frame), inside a gap on the first frame after it. Scale is honoured by GStreamer's own pacing
(Rate-Control: yes) or not at all (Rate-Control: no: as fast as the pipeline runs).

Prints JSON lines on stdout like gst-rtsp-server.py ({"event": "ready", "port": N, "url": ...},
{"event": "request", "method": "PLAY", "range": ..., "scale": ...}, ...). Exits when stdin closes.
"""
import argparse
import json
import os
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer, GstVideo  # noqa: E402

NTP_UNIX_OFFSET_S = 2208988800
BITS = 20
BLOCK_W = 16
BAND_H = 32


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mount", default="/recording")
    p.add_argument("--base-ms", type=int, required=True)
    p.add_argument("--duration-s", type=float, default=3600)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--gop", type=int, default=25)
    p.add_argument("--gap", action="append", default=[], help="START_MS:END_MS, Unix ms")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=192)
    return p.parse_args()


class Recording:
    def __init__(self, a):
        self.base_ms = a.base_ms
        self.fps = a.fps
        self.frames = int(a.duration_s * a.fps)
        self.w = a.width
        self.h = a.height
        self.gaps = []
        for g in a.gap:
            s, e = g.split(":")
            self.gaps.append((self.index_at(int(s)), self.index_at(int(e))))
        self.gray = bytes([96]) * (self.w * (self.h - BAND_H))
        self.chroma = bytes([128]) * (self.w * self.h // 2)

    def index_at(self, unix_ms):
        """The first frame at or after unix_ms."""
        return max(0, -((self.base_ms - unix_ms) * self.fps // 1000))

    def time_ms(self, i):
        return self.base_ms + i * 1000 / self.fps

    def next_recorded(self, i):
        """i, or the first frame after the gap i falls in; None past the end."""
        for s, e in self.gaps:
            if s <= i < e:
                i = e
        return i if i < self.frames else None

    def picture(self, i):
        row = bytearray()
        for b in range(BITS):
            bit = (i >> (BITS - 1 - b)) & 1
            row += bytes([235 if bit else 16]) * BLOCK_W
        row += bytes([16]) * (self.w - len(row))
        return bytes(row) * BAND_H + self.gray + self.chroma


class Feeder:
    """Feeds one media's appsrc: from the seek position on, frame after frame."""

    def __init__(self, rec, src):
        self.rec = rec
        self.src = src
        self.lock = threading.Lock()
        self.next = 0
        self.discont = True
        # Frames: intra (ONVIF Streaming §6.5): key frames only, one per GOP.
        self.intra = False
        self.gop = 25
        src.connect("need-data", self.on_need)
        src.connect("seek-data", self.on_seek)

    def on_seek(self, _src, offset):
        # offset: the segment position in ns since 1900 (gst-rtsp-server's clock ranges).
        unix_ms = offset // 1_000_000 - NTP_UNIX_OFFSET_S * 1000
        with self.lock:
            self.next = self.rec.index_at(unix_ms)
            self.discont = True
        return True

    def on_need(self, src, _length):
        with self.lock:
            i = self.rec.next_recorded(self.next)
            if i is None:
                src.emit("end-of-stream")
                return
            discont = self.discont or i != self.next
            self.next = i + (self.gop if self.intra else 1)
            self.discont = False
        buf = Gst.Buffer.new_wrapped(self.rec.picture(i))
        t_ns = int(round((self.rec.time_ms(i) + NTP_UNIX_OFFSET_S * 1000) * 1_000_000))
        buf.pts = t_ns
        buf.dts = t_ns
        buf.duration = Gst.SECOND // self.rec.fps
        if discont:
            buf.set_flags(Gst.BufferFlags.DISCONT)
        if self.intra:
            # Every frame sent is a key frame (the encoder is told so).
            src.get_static_pad("src").push_event(GstVideo.video_event_new_downstream_force_key_unit(
                buf.pts, buf.pts, buf.pts, True, 0))
        src.emit("push-buffer", buf)


class ReplayFactory(GstRtspServer.RTSPOnvifMediaFactory):
    """Raw frames -> H.264 -> a `pay0` bin of rtph264pay + rtponviftimestamp (ghost pads made by hand)."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def do_create_element(self, _url):
        a = self.a
        caps = f"video/x-raw,format=I420,width={a.width},height={a.height},framerate={a.fps}/1"
        top = Gst.parse_bin_from_description(
            f"appsrc name=src format=time stream-type=seekable is-live=false caps={caps} "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.gop} bitrate=600 "
            f"! video/x-h264,profile=constrained-baseline ! h264parse name=parse", False)
        pay = Gst.parse_bin_from_description(
            "rtph264pay pt=96 config-interval=-1 "
            "! rtponviftimestamp ntp-offset=0 set-e-bit=true set-t-bit=true drop-out-of-segment=false", True)
        pay.set_name("pay0")
        top.add(pay)
        top.get_by_name("parse").link(pay)
        return top


def main():
    a = parse_args()
    Gst.init(None)
    loop = GLib.MainLoop()
    rec = Recording(a)

    server = GstRtspServer.RTSPOnvifServer.new()
    server.set_address(a.host)
    server.set_service(str(a.port))

    factory = ReplayFactory(a)
    factory.set_replay_support(True)
    # The ONVIF factory builds nothing but ONVIF media (rtsp-onvif-media-factory.c).
    factory.set_media_gtype(GstRtspServer.RTSPOnvifMedia)
    factory.set_shared(False)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)

    def on_configure(_factory, media):
        src = media.get_element().get_by_name("src")
        # An attribute on the wrapper keeps it (and the feeder) tied to this media (PyGObject toggle refs).
        media.feeder = Feeder(rec, src)
        media.feeder.gop = a.gop

    factory.connect("media-configure", on_configure)
    server.get_mount_points().add_factory(a.mount, factory)

    def on_client(_server, client):
        def on_play(_c, ctx):
            h = ctx.request
            frames = h.get_header(GstRtsp.RTSPHeaderField.FRAMES, 0)[1]
            f = getattr(ctx.media, "feeder", None) if ctx.media else None
            if f is not None:
                with f.lock:
                    f.intra = (frames or "").startswith("intra")
            emit(event="request", method="PLAY", range=h.get_header(GstRtsp.RTSPHeaderField.RANGE, 0)[1],
                 scale=h.get_header(GstRtsp.RTSPHeaderField.SCALE, 0)[1], frames=frames)

        for sig, method in [("describe-request", "DESCRIBE"), ("setup-request", "SETUP"), ("pause-request", "PAUSE")]:
            client.connect(sig, (lambda m: lambda _c, _ctx: emit(event="request", method=m))(method))
        client.connect("play-request", on_play)
        client.connect("new-session", lambda _c, _s: emit(event="session"))
        client.connect("closed", lambda _c: emit(event="client-closed"))

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        emit(event="error", message=f"cannot listen on {a.host}:{a.port}")
        sys.exit(2)
    pool = server.get_session_pool()
    pool.connect("session-removed", lambda _p, _s: emit(event="session-removed"))
    GLib.timeout_add_seconds(1, lambda: (pool.cleanup(), True)[1])

    def quit_(*_args):
        loop.quit()
        return False

    GLib.io_add_watch(sys.stdin.fileno(), GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR,
                      lambda fd, cond: quit_() if (cond & (GLib.IO_HUP | GLib.IO_ERR)) or not os.read(fd, 4096) else True)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, quit_)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, quit_)
    port = server.get_bound_port()
    emit(event="ready", port=port, url=f"rtsp://{a.host}:{port}{a.mount}")
    loop.run()


if __name__ == "__main__":
    main()
