import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SeqCounter, lossFraction, windowOf } from "../bench/lib/seq.ts";

function feed(seqs: number[]): SeqCounter {
  const c = new SeqCounter();
  for (const s of seqs) c.push(s);
  return c;
}

describe("bench SeqCounter (RFC 3550 §A.1/§A.3 loss accounting)", () => {
  it("counts a clean run with no loss", () => {
    const c = feed([100, 101, 102, 103]);
    expect(c.snapshot()).toEqual({ received: 4, expected: 4, duplicates: 0, reordered: 0 });
    expect(c.lost).toBe(0);
    expect(c.highestExt).toBe(103);
  });

  it("counts gaps as loss", () => {
    const c = feed([10, 11, 14, 15, 20]);
    expect(c.expected).toBe(11);
    expect(c.received).toBe(5);
    expect(c.lost).toBe(6);
  });

  it("extends across the 16-bit wraparound without counting loss", () => {
    const c = feed([65533, 65534, 65535, 0, 1, 2]);
    expect(c.expected).toBe(6);
    expect(c.lost).toBe(0);
    expect(c.highestExt).toBe(65536 + 2);
  });

  it("counts loss that straddles the wraparound", () => {
    const c = feed([65534, 65535, 2, 3]); // 0 and 1 lost
    expect(c.expected).toBe(6);
    expect(c.lost).toBe(2);
  });

  it("tells duplicates from reordered packets", () => {
    const c = feed([1, 2, 4, 3, 4, 2]);
    expect(c.duplicates).toBe(2); // the second 4 and the second 2
    expect(c.reordered).toBe(1); // 3 arrived after 4
    expect(c.expected).toBe(4);
    expect(c.received).toBe(6);
    expect(c.lost).toBe(0); // RFC 3550: duplicates offset loss, never below zero
  });

  it("a packet older than the first one widens the run (late start)", () => {
    const c = feed([10, 11, 9]);
    expect(c.expected).toBe(3);
    expect(c.lost).toBe(0);
    expect(c.reordered).toBe(1);
  });

  it("takes a huge jump as a sender restart, not as loss", () => {
    const c = feed([100, 101, 102, 40000, 40001]);
    expect(c.restarts).toBe(1);
    expect(c.expected).toBe(5);
    expect(c.lost).toBe(0);
  });

  it("windows: differences of snapshots, loss never negative", () => {
    const c = feed([1, 2, 3]);
    const a = c.snapshot();
    for (const s of [4, 6, 7, 9]) c.push(s); // 5 and 8 lost
    const w = windowOf(a, c.snapshot());
    expect(w).toMatchObject({ received: 4, expected: 6, lost: 2 });
    expect(lossFraction(w)).toBeCloseTo(2 / 6);
    expect(lossFraction({ expected: 0, lost: 0 })).toBe(0);
  });

  it("property: dropping k packets of an in-order stream (any start, wrapping) loses exactly k", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 2, max: 3000 }),
        fc.array(fc.integer({ min: 1, max: 2998 }), { maxLength: 50 }),
        (start, length, dropIdx) => {
          const drop = new Set(dropIdx.filter((i) => i < length - 1)); // never the first or last
          const c = new SeqCounter();
          for (let i = 0; i < length; i++) if (!drop.has(i) || i === 0) c.push((start + i) & 0xffff);
          const dropped = [...drop].filter((i) => i !== 0).length;
          return c.expected === length && c.lost === dropped && c.duplicates === 0;
        },
      ),
    );
  });

  it("property: any permutation within a small window loses nothing and counts every packet", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.array(fc.integer(), { minLength: 1, maxLength: 200 }), (start, keys) => {
        // Shuffle 0..n−1 locally: sort indices by (i + small jitter from keys).
        const n = keys.length;
        const order = keys.map((k, i) => ({ i, key: i + (Math.abs(k) % 8) })).sort((a, b) => a.key - b.key || a.i - b.i);
        const c = new SeqCounter();
        for (const { i } of order) c.push((start + i) & 0xffff);
        return c.received === n && c.expected === n && c.lost === 0 && c.duplicates === 0;
      }),
    );
  });
});
