#!/usr/bin/python3
"""A real RTSP recorder for tests: GStreamer's RTSP server with H.264 video and PCMU audio.

Run with /usr/bin/python3 (the GStreamer bindings live there). Prints JSON lines on stdout:
  {"event": "ready", "port": N, "url": "rtsp://127.0.0.1:N/test"}      once listening
  {"event": "client-connected", "client": K, "remote": "127.0.0.1"}   a TCP connection
  {"event": "request", "client": K, "method": "OPTIONS"}              every RTSP request handled
  {"event": "session", "client": K}                                   an RTSP session created (SETUP)
  {"event": "session-removed"}                                        a session ended (TEARDOWN, close, timeout)
  {"event": "teardown", "client": K} / {"event": "client-closed", "client": K}
  {"event": "error", "message": "..."}
Exits when stdin closes (the parent died) or on SIGTERM/SIGINT.
"""
import argparse
import json
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, GObject, Gst, GstRtsp, GstRtspServer  # noqa: E402


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--mount", default="/test")
    p.add_argument("--user", help="require digest auth with this user")
    p.add_argument("--auth", default="digest", choices=["digest", "basic"], help="authentication scheme asked with --user")
    p.add_argument("--password", default="")
    p.add_argument("--protocols", default="tcp,udp", help="comma list of tcp, udp")
    p.add_argument("--sprop-only", action="store_true", help="SPS/PPS only in the SDP (config-interval=0)")
    p.add_argument("--config-interval", type=int, default=-1, help="rtph264pay config-interval (-1 = every IDR)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--gop", type=int, default=25, help="key-int-max, frames")
    p.add_argument("--bitrate", type=int, default=500, help="kbit/s")
    p.add_argument("--pattern", default="ball", help="videotestsrc pattern: ball (a moving ball, compresses far below --bitrate), snow (noise: the encoder sends --bitrate)")
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--session-timeout", type=int, default=60, help="RTSP session timeout, seconds")
    p.add_argument("--frames", type=int, default=0, help="end the stream (EOS) after this many video frames; 0 = never")
    p.add_argument("--codec", default="h264", help="h264 or h265 video")
    p.add_argument("--aac", action="store_true", help="AAC audio (RTP MPEG4-GENERIC, RFC 3640) instead of PCMU")
    p.add_argument("--aac-latm", action="store_true", help="AAC audio in RTP MP4A-LATM (RFC 6416) instead of PCMU")
    p.add_argument("--audio-rate", type=int, default=8000, help="audio sampling rate, Hz")
    p.add_argument("--ntp-offset", type=float, default=None,
                   help="RTCP sender reports carry the host's wall clock plus this many seconds (a recorder whose clock is off)")
    p.add_argument("--no-rtcp", action="store_true", help="send no RTCP at all (no sender reports)")
    return p.parse_args()


def launch_line(a):
    interval = 0 if a.sprop_only else a.config_interval
    vframes = f" num-buffers={a.frames}" if a.frames > 0 else ""
    # 8000 Hz audio in buffers of 400 samples (50 ms): the audio ends with the video.
    aframes = f" num-buffers={max(1, a.frames * 20 // a.fps)} samplesperbuffer={a.audio_rate // 20}" if a.frames > 0 else ""
    if a.codec == "h265":
        video = (
            f"videotestsrc is-live=true pattern={a.pattern}{vframes} ! video/x-raw,width={a.width},height={a.height},framerate={a.fps}/1 "
            f"! x265enc tune=zerolatency speed-preset=ultrafast key-int-max={a.gop} bitrate={a.bitrate} "
            f"! rtph265pay name=pay0 pt=96 config-interval=-1"
        )
    else:
        video = None
    if a.aac_latm:
        audio_enc = "avenc_aac ! rtpmp4apay name=pay1 pt=97"
    elif a.aac:
        audio_enc = "avenc_aac ! rtpmp4gpay name=pay1 pt=97"
    else:
        audio_enc = "mulawenc ! rtppcmupay name=pay1 pt=0"
    arate = a.audio_rate if (a.aac or a.aac_latm) else 8000
    if video is not None:
        return f"( {video}{'' if a.no_audio else  f' audiotestsrc is-live=true wave=sine{aframes} ! audio/x-raw,rate={arate},channels=1 ! audioconvert ! ' + audio_enc} )"
    video = (
        f"videotestsrc is-live=true pattern={a.pattern}{vframes} ! video/x-raw,width={a.width},height={a.height},framerate={a.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.gop} bitrate={a.bitrate} "
        f"{'option-string=repeat-headers=0 ' if a.sprop_only else ''}"
        # avc stream-format keeps x264's SPS/PPS in codec_data only, so with config-interval=0 they reach
        # the client through the SDP's sprop-parameter-sets alone (a camera that never repeats them).
        f"! video/x-h264,profile=constrained-baseline{',stream-format=avc,alignment=au' if a.sprop_only else ''} "
        f"! rtph264pay name=pay0 pt=96 config-interval={interval}"
    )
    audio = (
        f" audiotestsrc is-live=true wave=sine{aframes} ! audio/x-raw,rate={arate},channels=1 ! audioconvert "
        f"! {audio_enc}"
    )
    return f"( {video}{'' if a.no_audio else audio} )"


def use_clock_time_in_reports(media):
    """Once the media has its rtpbin: SR NTP times are the pipeline clock's absolute time, taken as-is (ns since 1900)."""
    pipeline = media.get_element().get_parent()
    it = pipeline.iterate_elements()
    while True:
        ok, el = it.next()
        if ok != Gst.IteratorResult.OK:
            break
        if el.get_factory() is not None and el.get_factory().get_name() == "rtpbin":
            el.set_property("ntp-time-source", "clock-time")


def offset_clock(seconds):
    """The wall clock plus `seconds`, counted from the NTP epoch (1900) as RTCP wants it."""
    clock = GObject.new(Gst.SystemClock, clock_type=Gst.ClockType.REALTIME)
    now = clock.get_internal_time()
    clock.set_calibration(now, now + int((2208988800 + seconds) * Gst.SECOND), 1, 1)
    return clock


def main():
    a = parse_args()
    Gst.init(None)
    loop = GLib.MainLoop()

    server = GstRtspServer.RTSPServer()
    server.set_address(a.host)
    server.set_service(str(a.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(a))
    factory.set_shared(True)
    if a.no_rtcp:
        factory.set_enable_rtcp(False)
    if a.ntp_offset is not None:
        clock = offset_clock(a.ntp_offset)

        def configure(_f, media):
            media.set_clock(clock)
            media.connect("prepared", use_clock_time_in_reports)

        factory.connect("media-configure", configure)
    protos = GstRtsp.RTSPLowerTrans(0)
    for name in a.protocols.split(","):
        protos |= {"tcp": GstRtsp.RTSPLowerTrans.TCP, "udp": GstRtsp.RTSPLowerTrans.UDP}[name.strip()]
    factory.set_protocols(protos)

    if a.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        if a.auth == "basic":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
        else:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(a.user, a.password, token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(perms)

    server.get_mount_points().add_factory(a.mount, factory)

    counter = {"n": 0}

    def on_client(_server, client):
        counter["n"] += 1
        k = counter["n"]
        conn = client.get_connection()
        emit(event="client-connected", client=k, remote=conn.get_ip() if conn else None)

        def on_request(method):
            return lambda _c, _ctx: emit(event="request", client=k, method=method)

        for sig, method in [
            ("options-request", "OPTIONS"),
            ("describe-request", "DESCRIBE"),
            ("setup-request", "SETUP"),
            ("play-request", "PLAY"),
            ("get-parameter-request", "GET_PARAMETER"),
            ("set-parameter-request", "SET_PARAMETER"),
        ]:
            client.connect(sig, on_request(method))

        def on_session(_c, session):
            session.set_timeout(a.session_timeout)
            # Expire exactly at the announced timeout (GStreamer adds 5 s of grace by default),
            # so tests see a client that does not keep its session alive lose it.
            session.set_property("extra-timeout", 0)
            emit(event="session", client=k)

        client.connect("new-session", on_session)
        client.connect("teardown-request", lambda _c, _ctx: emit(event="teardown", client=k))
        client.connect("closed", lambda _c: emit(event="client-closed", client=k))

    server.connect("client-connected", on_client)

    if server.attach(None) == 0:
        emit(event="error", message=f"cannot listen on {a.host}:{a.port}")
        sys.exit(2)

    # Expire sessions whose client stopped keeping them alive (RFC 2326 §12.37).
    pool = server.get_session_pool()
    pool.connect("session-removed", lambda _p, _s: emit(event="session-removed"))
    GLib.timeout_add_seconds(1, lambda: (pool.cleanup(), True)[1])

    def quit_(*_args):
        loop.quit()
        return False

    # Die with the parent: stdin reaches EOF when the test process goes away.
    GLib.io_add_watch(sys.stdin.fileno(), GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR,
                      lambda fd, cond: quit_() if (cond & (GLib.IO_HUP | GLib.IO_ERR)) or not os.read(fd, 4096) else True)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, quit_)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, quit_)

    port = server.get_bound_port()
    emit(event="ready", port=port, url=f"rtsp://{a.host}:{port}{a.mount}")
    loop.run()


if __name__ == "__main__":
    main()
