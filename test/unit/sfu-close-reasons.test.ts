/** Viewer close reasons: one typed set, plain words for each, and text from a worker mapped back. */
import { describe, expect, it } from "vitest";
import { authCloseReason, closeReasonText, isAuthCloseReason, isExpectedClose, toCloseReason, ViewerCloseReasons } from "../../sfu/api.ts";

describe("viewer close reasons", () => {
  it("keeps the words logs and the audit trail already carry", () => {
    expect(ViewerCloseReasons.clientDelete).toBe("client delete");
    expect(ViewerCloseReasons.sfuClosing).toBe("sfu closing");
    expect(ViewerCloseReasons.sourceClosed).toBe("source closed");
    expect(authCloseReason("logout")).toBe("auth: logout");
  });

  it("maps text from a worker message back to a known reason, anything else to 'closed'", () => {
    for (const r of Object.values(ViewerCloseReasons)) expect(toCloseReason(r)).toBe(r);
    expect(toCloseReason("auth: revoked")).toBe("auth: revoked");
    expect(toCloseReason("something a worker made up")).toBe(ViewerCloseReasons.closed);
    expect(isAuthCloseReason(authCloseReason("expired"))).toBe(true);
    for (const r of Object.values(ViewerCloseReasons)) expect(isAuthCloseReason(r)).toBe(false);
  });

  it("says each in plain words, distinct for the ones a person acts on", () => {
    const texts = new Set<string>();
    for (const r of Object.values(ViewerCloseReasons)) {
      const t = closeReasonText(r);
      expect(t).toMatch(/^[A-Z].*\.$/);
      expect(t).not.toMatch(/sfu|ice|dtls|rtcp/i);
      texts.add(t);
    }
    expect(texts.size).toBeGreaterThanOrEqual(9);
    expect(closeReasonText(authCloseReason("expired"))).toMatch(/access to this camera ended/);
    expect(closeReasonText(ViewerCloseReasons.sfuClosing)).toBe("The gateway is restarting.");
  });

  it("counts only the ends their owner chose as expected", () => {
    expect(isExpectedClose(ViewerCloseReasons.clientDelete)).toBe(true);
    expect(isExpectedClose(ViewerCloseReasons.sfuClosing)).toBe(true);
    expect(isExpectedClose(ViewerCloseReasons.connectTimeout)).toBe(false);
    expect(isExpectedClose(authCloseReason("revoked"))).toBe(false);
  });
});
