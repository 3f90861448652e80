/**
 * Launcher for baresip (Debian package) as a headless door station: its own config directory
 * in a temp dir, G.711 only, a WAV file as microphone (aufile), no audio hardware (aubridge
 * as player), and everything it hears recorded by the sndfile filter (dump-*-dec.wav).
 * Commands go to its stdin (stdio module): `/dial <uri>`, digits for DTMF, `/hangup`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface BaresipOptions {
  /** SIP user name and digest password of the door account. */
  user: string;
  password: string;
  /** SIP domain of the account (the AOR is sip:user@domain). */
  domain: string;
  /** `host:port` every request goes to (outbound proxy = the gateway). */
  registrar: string;
  transport?: "udp" | "tcp";
  /** Microphone: 8 kHz mono S16LE WAV bytes. */
  microphone: Buffer;
  /** Registration interval, s. Default 120. */
  regint?: number;
  /** Answer incoming calls at once (for "talk to the door"). Default true. */
  autoAnswer?: boolean;
  /** Keep the temp directory (debugging). */
  keepDir?: boolean;
  /**
   * Run inside this network namespace (`ip netns exec`), listening and sending media on `address`
   * there instead of loopback. Default: this namespace, 127.0.0.1.
   */
  netns?: { ns: string; address: string };
}

// eslint-disable-next-line no-control-regex -- terminal colour codes start with ESC
const ANSI_COLOUR = /\x1b\[[0-9;]*m/g;

export class Baresip {
  readonly dir: string;
  readonly lines: string[] = [];
  private readonly child: ChildProcess;
  private readonly keepDir: boolean;
  private waiters: { re: RegExp; from: number; resolve: (l: string) => void }[] = [];
  private exited: Promise<number | null>;

  private constructor(dir: string, child: ChildProcess, keepDir: boolean) {
    this.dir = dir;
    this.child = child;
    this.keepDir = keepDir;
    let buf = "";
    const onData = (d: string): void => {
      buf += d;
      const parts = buf.split(/\r?\n/);
      buf = parts.pop() ?? "";
      for (const raw of parts) {
        // Strip terminal colour codes and the echo of typed commands.
        const line = raw.replace(ANSI_COLOUR, "");
        this.lines.push(line);
        for (const w of [...this.waiters]) {
          if (w.re.test(line)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    };
    child.stdout!.setEncoding("utf8").on("data", onData);
    child.stderr!.setEncoding("utf8").on("data", onData);
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  static start(opts: BaresipOptions): Baresip {
    const dir = mkdtempSync(join(tmpdir(), "gh-baresip-"));
    const mic = join(dir, "mic.wav");
    writeFileSync(mic, opts.microphone);
    const transport = opts.transport ?? "udp";
    writeFileSync(
      join(dir, "config"),
      [
        "poll_method\t\tepoll",
        `sip_listen\t\t${opts.netns?.address ?? "127.0.0.1"}:0`,
        // Loopback only: otherwise baresip writes the host's first interface address in its SDP
        // and the gateway sends the call's first RTP there (the test network guard refuses it).
        `net_interface\t\t${opts.netns?.address ?? "127.0.0.1"}`,
        `audio_source\t\taufile,${mic}`,
        "audio_player\t\taubridge,sink",
        "audio_alert\t\taubridge,sink",
        "module_path\t\t/usr/lib/baresip/modules",
        "module\t\t\tstdio.so",
        "module\t\t\tg711.so",
        "module\t\t\taufile.so",
        "module\t\t\taubridge.so",
        "module\t\t\tsndfile.so",
        "module_app\t\taccount.so",
        "module_app\t\tmenu.so",
        `snd_path\t\t${dir}`,
        "",
      ].join("\n"),
    );
    const params = [
      `auth_pass=${opts.password}`,
      `outbound="sip:${opts.registrar};transport=${transport}"`,
      `regint=${opts.regint ?? 120}`,
      `answermode=${opts.autoAnswer === false ? "manual" : "auto"}`,
      "audio_codecs=PCMU,PCMA",
    ];
    writeFileSync(join(dir, "accounts"), `<sip:${opts.user}@${opts.domain};transport=${transport}>;${params.join(";")}\n`);
    const argv = ["baresip", "-f", dir, "-v"];
    const child = opts.netns
      ? spawn("ip", ["netns", "exec", opts.netns.ns, ...argv], { cwd: dir, stdio: ["pipe", "pipe", "pipe"] })
      : spawn(argv[0]!, argv.slice(1), { cwd: dir, stdio: ["pipe", "pipe", "pipe"] });
    return new Baresip(dir, child, opts.keepDir ?? false);
  }

  /** Resolve with the first output line (from now, or from line `from`) matching `re`. */
  waitFor(re: RegExp, timeoutMs = 10_000, from = this.lines.length): Promise<string> {
    for (let i = from; i < this.lines.length; i++) if (re.test(this.lines[i]!)) return Promise.resolve(this.lines[i]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`baresip: timed out waiting for ${re}\n${this.lines.slice(-40).join("\n")}`)), timeoutMs);
      this.waiters.push({
        re,
        from,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  }

  /** Type on baresip's console: a long command (`/dial …`) or single keys (DTMF digits). */
  type(text: string): void {
    this.child.stdin!.write(text);
  }

  command(cmd: string): void {
    this.type(`/${cmd}\n`);
  }

  /** The WAV baresip recorded from the network (what the gateway sent), if any. */
  recordedFromNetwork(): Buffer | undefined {
    const f = readdirSync(this.dir).find((n) => /^dump-.*-dec\.wav$/.test(n));
    return f ? readFileSync(join(this.dir, f)) : undefined;
  }

  /** Quit (SIGTERM if it does not); the directory (recordings) stays until close(). */
  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      this.command("quit");
      const t = setTimeout(() => this.child.kill("SIGTERM"), 2000);
      const k = setTimeout(() => this.child.kill("SIGKILL"), 5000);
      await this.exited;
      clearTimeout(t);
      clearTimeout(k);
    }
  }

  /** Stop, then remove the temp directory. Idempotent. */
  async close(): Promise<void> {
    await this.stop();
    if (!this.keepDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A mono 16-bit PCM WAV file. */
export function wav(samples: Int16Array, rate = 8000): Buffer {
  const data = Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
  const h = Buffer.alloc(44);
  h.write("RIFF", 0, "latin1");
  h.writeUInt32LE(36 + data.length, 4);
  h.write("WAVE", 8, "latin1");
  h.write("fmt ", 12, "latin1");
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write("data", 36, "latin1");
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

/** Samples of a WAV file (16-bit PCM, any header chunks skipped). */
export function wavSamples(file: Buffer): Int16Array {
  let off = 12;
  while (off + 8 <= file.length) {
    const id = file.toString("latin1", off, off + 4);
    const len = file.readUInt32LE(off + 4);
    if (id === "data") {
      const end = Math.min(file.length, off + 8 + len);
      const bytes = file.subarray(off + 8, end - ((end - off - 8) % 2));
      return new Int16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    }
    off += 8 + len + (len % 2);
  }
  return new Int16Array(0);
}

/** A sine tone, `seconds` long. */
export function tone(freq: number, seconds: number, rate = 8000, amplitude = 8000): Int16Array {
  const out = new Int16Array(Math.round(seconds * rate));
  for (let i = 0; i < out.length; i++) out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * freq * i) / rate));
  return out;
}
