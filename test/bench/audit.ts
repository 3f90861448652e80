/**
 * What the audit trail costs.
 *
 *   audit_writes_per_s          records per second the trail stores, sustained, through the
 *                               gateway's own path (AuditLog.record → batched transactions), SQLite
 *                               (the default, WAL, in a temp file)
 *   audit_pg_writes_per_s       the same into a PostgreSQL server started for the bench (unix socket)
 *   whep_post_ms_p50/p99_audit_on|off, whep_post_p99_added_ms
 *                               a WHEP POST (offer → 201 answer, then DELETE) against two gateways
 *                               started side by side in this process, one with the audit trail on,
 *                               one with it off, in alternating rounds; the added p99 is on − off
 *
 * The offer is one werift receive-only offer reused for every POST: each POST still creates a
 * viewer (ICE ports, DTLS certificate, the audit record), which is what the latency covers.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { AuditLog } from "../../gateway/audit/log.ts";
import { PostgresAuditStore } from "../../gateway/audit/postgres.ts";
import { SqliteAuditStore } from "../../gateway/audit/sqlite.ts";
import type { AuditStore } from "../../gateway/audit/store.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { startPostgres } from "../peers/postgres.ts";
import { chromiumVideoCodecs } from "../peers/werift-viewer.ts";
import { loopbackPeerConnection } from "../peers/loopback-peer.ts";

export interface AuditBenchOptions {
  quick?: boolean;
  log?: (msg: string) => void;
}

/** Records per second through AuditLog into `store`: `total` records, `perTurn` per turn of the loop. */
async function writesPerSecond(store: AuditStore, total: number, perTurn: number): Promise<number> {
  const audit = new AuditLog({ store, log: silentLogger, queueMax: total + 1, retentionDays: 0 });
  const t0 = performance.now();
  for (let i = 0; i < total; i += perTurn) {
    for (let j = 0; j < perTurn; j++)
      audit.record({ action: "live_view_start", outcome: "success", subject: `user${(i + j) % 97}`, name: "Bench User", session: "AbCdEfGhIjKlMnOp", source: "192.0.2.10", camera: `cam${(i + j) % 40}`, detail: '{"viewer":"v-0123456789"}' });
    await new Promise((r) => setImmediate(r));
  }
  await audit.flush();
  const s = (performance.now() - t0) / 1000;
  if (audit.stats.written !== total) throw new Error(`wrote ${audit.stats.written} of ${total}`);
  const verdict = await audit.verify();
  if (!verdict.ok) throw new Error("the chain did not verify after the bench");
  await audit.close();
  return Math.round(total / s);
}

async function offerSdp(): Promise<string> {
  const pc = loopbackPeerConnection({ codecs: { video: chromiumVideoCodecs(), audio: [] } });
  pc.addTransceiver("video", { direction: "recvonly" });
  await pc.setLocalDescription(await pc.createOffer());
  const sdp = pc.localDescription!.sdp;
  await pc.close();
  return sdp;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : 0;
};
const r3 = (v: number) => Math.round(v * 1000) / 1000;

async function whepPost(gw: Gateway, offer: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${gw.url}/whep/demo`, { method: "POST", headers: { "content-type": "application/sdp" }, body: offer });
  await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 201) throw new Error(`WHEP POST answered ${res.status}`);
  await fetch(new URL(res.headers.get("location")!, gw.url), { method: "DELETE" }).then((r) => r.text());
  return ms;
}

export async function benchAudit(opts: AuditBenchOptions = {}): Promise<Record<string, unknown>> {
  const log = opts.log ?? (() => {});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gh-bench-audit-"));
  const out: Record<string, unknown> = {};
  const total = opts.quick ? 20_000 : 100_000;
  try {
    out.audit_writes_per_s = await writesPerSecond(new SqliteAuditStore({ file: path.join(dir, "bench.sqlite") }), total, 500);
    log(`audit: SQLite ${out.audit_writes_per_s} records/s`);
    const pg = await startPostgres();
    try {
      const store = await PostgresAuditStore.open({ connectionString: pg.url, table: "bench_audit", poolSize: 2 });
      out.audit_pg_writes_per_s = await writesPerSecond(store, opts.quick ? 10_000 : 50_000, 500);
      log(`audit: PostgreSQL ${out.audit_pg_writes_per_s} records/s`);
    } finally {
      await pg.close();
    }

    // WHEP POST latency, audit on and off, alternating rounds.
    const base = { server: { host: "127.0.0.1", port: 0 }, auth: { mode: "none" }, log: { level: "silent" }, media: { workers: 1, viewers: { perSession: 10000, perUser: 10000 } } };
    const on = await startGateway({ config: parseConfig({ ...base, dataDir: dir, media: { ...base.media, icePortRange: [44000, 44999] } }, {}), log: silentLogger });
    const off = await startGateway({ config: parseConfig({ ...base, audit: { enabled: false }, media: { ...base.media, icePortRange: [45000, 45999] } }, {}), log: silentLogger });
    try {
      const offer = await offerSdp();
      const lat = { on: [] as number[], off: [] as number[] };
      for (let i = 0; i < 5; i++) {
        await whepPost(on, offer); // warm-up
        await whepPost(off, offer);
      }
      const rounds = opts.quick ? 4 : 10;
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 ? (["off", "on"] as const) : (["on", "off"] as const);
        for (const which of order) for (let i = 0; i < 20; i++) lat[which].push(await whepPost(which === "on" ? on : off, offer));
      }
      await on.audit!.flush();
      const recorded = (await on.audit!.query({ actions: ["live_view_start"], limit: 100_000 })).length;
      out.whep_post_ms_p50_audit_on = r3(pct(lat.on, 50));
      out.whep_post_ms_p99_audit_on = r3(pct(lat.on, 99));
      out.whep_post_ms_p50_audit_off = r3(pct(lat.off, 50));
      out.whep_post_ms_p99_audit_off = r3(pct(lat.off, 99));
      out.whep_post_p99_added_ms = r3(pct(lat.on, 99) - pct(lat.off, 99));
      out.whep_post_samples = lat.on.length;
      out.whep_post_audit_records = recorded;
      out.audit_method =
        "SQLite WAL in a temp file and PostgreSQL 15 on a unix socket, through AuditLog (500 records per loop turn, batched transactions, chain verified after); " +
        "WHEP: two in-process gateways (auth none, one media worker each), one reused werift offer, POST then DELETE, 20 per round, rounds alternating";
      log(`audit: WHEP POST p99 ${out.whep_post_ms_p99_audit_on} ms on, ${out.whep_post_ms_p99_audit_off} ms off`);
    } finally {
      await on.close();
      await off.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return out;
}
