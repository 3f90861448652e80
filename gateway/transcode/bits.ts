/** A big-endian bit reader over a Buffer that never throws: reading past the end sets `overrun` and yields 0. */
export class BitReader {
  private pos: number;
  private readonly buf: Buffer;
  private readonly endBit: number;
  overrun = false;
  constructor(buf: Buffer, startBit = 0, endBit = buf.length * 8) {
    this.buf = buf;
    this.pos = startBit;
    this.endBit = Math.min(endBit, buf.length * 8);
  }

  /** Position, bits from the start of the buffer. */
  get bit(): number {
    return this.pos;
  }

  get bitsLeft(): number {
    return Math.max(0, this.endBit - this.pos);
  }

  /** Reads `n` ≤ 32 bits as an unsigned number. */
  read(n: number): number {
    if (n === 0) return 0;
    if (this.pos + n > this.endBit) {
      this.overrun = true;
      this.pos = this.endBit;
      return 0;
    }
    let v = 0;
    for (let i = 0; i < n; i++) {
      const p = this.pos + i;
      v = v * 2 + ((this.buf[p >> 3]! >> (7 - (p & 7))) & 1);
    }
    this.pos += n;
    return v;
  }

  /** The next `n` ≤ 32 bits without consuming them (0 past the end, without setting `overrun`). */
  peek(n: number): number {
    if (this.pos + n > this.endBit) return 0;
    const at = this.pos;
    const v = this.read(n);
    this.pos = at;
    return v;
  }

  skipBits(n: number): void {
    if (this.pos + n > this.endBit) {
      this.overrun = true;
      this.pos = this.endBit;
    } else this.pos += n;
  }

  /** Copies `n` bytes starting at the current (possibly unaligned) bit position; undefined past the end. */
  bytes(n: number): Buffer | undefined {
    if (this.pos + n * 8 > this.endBit) {
      this.overrun = true;
      this.pos = this.endBit;
      return undefined;
    }
    if ((this.pos & 7) === 0) {
      const start = this.pos >> 3;
      this.pos += n * 8;
      return Buffer.from(this.buf.subarray(start, start + n));
    }
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.read(8);
    return out;
  }

  byteAlign(): void {
    this.pos = Math.min(this.endBit, (this.pos + 7) & ~7);
  }
}
