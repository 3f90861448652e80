import type net from "node:net";

/** Join two TCP connections both ways; an error or close on either side ends both. */
export function splice(a: net.Socket, b: net.Socket): void {
  a.pipe(b).pipe(a);
  const end = () => {
    a.destroy();
    b.destroy();
  };
  for (const s of [a, b]) {
    s.on("error", end);
    s.on("close", end);
  }
}
