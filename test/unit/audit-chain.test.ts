import { describe, expect, it } from "vitest";
import { csvLine, GENESIS_HASH, sealRecord, verifyChain, type AuditEntry, type AuditRecord } from "../../gateway/audit/record.ts";
import { filterOf } from "../../gateway/audit/routes.ts";

function chain(entries: AuditEntry[]): AuditRecord[] {
  const out: AuditRecord[] = [];
  let prev = GENESIS_HASH;
  entries.forEach((e, i) => {
    const r = sealRecord(e, i + 1, prev, 1_700_000_000_000 + i);
    out.push(r);
    prev = r.hash;
  });
  return out;
}

const entries: AuditEntry[] = [
  { action: "sign_in", outcome: "success", subject: "alice", name: "Alice", session: "ref1", source: "10.0.0.5" },
  { action: "live_view_start", outcome: "success", subject: "alice", camera: "cam12" },
  { action: "live_view_end", outcome: "success", subject: "alice", camera: "cam12", detail: '{"seconds":42}' },
  { action: "sign_out", outcome: "success", subject: "alice", session: "ref1" },
];

describe("audit hash chain", () => {
  it("chains every record to the one before and verifies an untouched chain", () => {
    const recs = chain(entries);
    expect(recs[0]!.prevHash).toBe(GENESIS_HASH);
    for (let i = 1; i < recs.length; i++) expect(recs[i]!.prevHash).toBe(recs[i - 1]!.hash);
    expect(verifyChain(recs)).toEqual({ ok: true, checked: 4, lastSeq: 4, lastHash: recs[3]!.hash });
  });

  it("detects a changed field, a removed record, a reordering and a rewritten hash", () => {
    const recs = chain(entries);
    const edited = recs.map((r) => ({ ...r }));
    edited[1]!.camera = "cam13";
    expect(verifyChain(edited)).toMatchObject({ ok: false, brokenAt: 2, problem: "hash_mismatch", checked: 1 });

    expect(verifyChain([recs[0]!, recs[2]!, recs[3]!])).toMatchObject({ ok: false, brokenAt: 3, problem: "sequence_gap" });

    // Renumbered to hide the gap: the previous hash no longer matches.
    const renumbered = [recs[0]!, { ...recs[2]!, seq: 2 }, { ...recs[3]!, seq: 3 }];
    expect(verifyChain(renumbered)).toMatchObject({ ok: false, brokenAt: 2, problem: "prev_hash_mismatch" });

    // A record forged with a correct own hash still breaks the link to the next one.
    const forged = recs.map((r) => ({ ...r }));
    const f = sealRecord({ ...entries[1]!, camera: "cam13" }, 2, recs[0]!.hash, recs[1]!.time);
    forged[1] = f;
    expect(verifyChain(forged)).toMatchObject({ ok: false, brokenAt: 3, problem: "prev_hash_mismatch" });
  });

  it("starts from the anchor retention left", () => {
    const recs = chain(entries);
    expect(verifyChain(recs.slice(2), { seq: 2, hash: recs[1]!.hash })).toMatchObject({ ok: true, checked: 2 });
    expect(verifyChain(recs.slice(2))).toMatchObject({ ok: false, brokenAt: 3, problem: "sequence_gap" });
  });

  it("clips long fields and keeps empty ones as null", () => {
    const r = sealRecord({ action: "sign_in", outcome: "denied", source: "", detail: "x".repeat(5000), name: "n".repeat(600) }, 1, GENESIS_HASH, 5);
    expect(r.source).toBeNull();
    expect(r.detail).toHaveLength(2000);
    expect(r.name).toHaveLength(512);
    expect(r.time).toBe(5);
  });
});

describe("audit CSV and filters", () => {
  it("writes RFC 4180 lines and defuses spreadsheet formulas", () => {
    const r = sealRecord({ action: "sign_in", outcome: "success", name: '=HYPERLINK("x")', detail: "a,b\nc", subject: "-1" }, 7, GENESIS_HASH, Date.UTC(2026, 11, 6, 12, 0, 0));
    const line = csvLine(r);
    expect(line.endsWith("\r\n")).toBe(true);
    expect(line.startsWith("7,2026-12-06T12:00:00.000Z,sign_in,success,'-1,")).toBe(true);
    expect(line).toContain(`"'=HYPERLINK(""x"")"`);
    expect(line).toContain('"a,b\nc"');
  });

  it("reads filters from a query string and refuses malformed ones", () => {
    expect(filterOf({ user: "alice", camera: "cam12", action: "live_view_start,live_view_end", from: "2026-12-06T00:00:00Z", to: "1796601600000", limit: "50", before: "900" }, 1000)).toEqual({
      user: "alice",
      camera: "cam12",
      door: undefined,
      actions: ["live_view_start", "live_view_end"],
      from: Date.UTC(2026, 11, 6),
      to: 1796601600000,
      beforeSeq: 900,
      limit: 50,
    });
    expect(filterOf({}, 1000).limit).toBe(100);
    expect(() => filterOf({ action: "drop_table" }, 1000)).toThrow(/action: unknown drop_table/);
    expect(() => filterOf({ from: "yesterday" }, 1000)).toThrow(/from:/);
    expect(() => filterOf({ limit: "5000" }, 1000)).toThrow(/limit: a whole number from 1 to 1000/);
    expect(() => filterOf({ user: ["a", "b"] }, 1000)).toThrow(/user:/);
  });
});
