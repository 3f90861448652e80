/**
 * The credentials a page names with its offer (`Gatehouse-Relay-Username`, gateway/relay-access.ts):
 * only the caller's own usernames minted here are taken, a few at most; anything else is ignored.
 */
import { describe, expect, it } from "vitest";
import { namedRelayUsers } from "../../gateway/relay-access.ts";
import { mintTurnCredentials } from "../../turn/index.ts";

const mint = (subject: string, session?: string) => mintTurnCredentials({ secret: "s".repeat(32), subject, ttlSeconds: 300, session }).username;

describe("the TURN credentials a page names with its offer", () => {
  it("takes the caller's own minted usernames, in order, without repeats", () => {
    const a = mint("alice", "sessionRefAAAAAA");
    const b = mint("alice");
    expect(namedRelayUsers(`${a}, ${b},${a}`, "alice")).toEqual([a, b]);
    expect(namedRelayUsers([a, b], "alice")).toEqual([a, b]);
  });

  it("ignores someone else's, foreign or malformed names, and takes at most four", () => {
    const own = Array.from({ length: 6 }, () => mint("alice"));
    expect(namedRelayUsers(mint("mallory"), "alice")).toEqual([]);
    // A REST username made elsewhere with the same secret (no mint tail of ours).
    expect(namedRelayUsers(`${Math.floor(Date.now() / 1000) + 60}:alice`, "alice")).toEqual([]);
    expect(namedRelayUsers("alice, ,:::,\u0000", "alice")).toEqual([]);
    expect(namedRelayUsers(undefined, "alice")).toEqual([]);
    expect(namedRelayUsers("x".repeat(5000), "alice")).toEqual([]);
    expect(namedRelayUsers(own.join(","), "alice")).toEqual(own.slice(0, 4));
  });
});
