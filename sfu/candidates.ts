/**
 * ICE candidates a viewer gives us, in its offer or trickled with WHEP PATCH (RFC 8840),
 * read and judged before werift sees them. Pure: text in, a typed candidate or a verdict out.
 *
 * Only IP literals are taken. RFC 8839 §5.1 allows a name as connection-address, and
 * browsers hide their addresses behind mDNS `.local` names; werift would resolve either on
 * the client's behalf (a multicast query, or the system resolver) and hold the request
 * until it answered. Nothing here resolves anything: a name is dropped and counted.
 *
 * Addresses that are no place to send connectivity checks to are dropped as well, with the
 * same special-purpose ranges the TURN relay refuses: unspecified, broadcast, multicast,
 * reserved, link-local (and cloud metadata), documentation, translation prefixes…
 * Loopback is taken only when the media sockets are bound to loopback themselves, private
 * ranges (RFC 1918, CGNAT, unique-local) unless the operator turns them off.
 *
 * Dropping a candidate never strands a viewer that can reach us: its own checks teach the
 * gateway a peer-reflexive candidate (RFC 8445 §7.3.1.3), which is the path a browser
 * behind mDNS names takes anyway.
 */
import { BadInputError } from "../config/errors.ts";
import { canonicalIp, isIpLiteral } from "../config/net/ip.ts";
import { specialPurpose, type SpecialPurpose } from "../config/net/special.ts";

/** Why a well-formed candidate was not given to the ICE agent. */
export type CandidateDropReason =
  | "name" // a host name or mDNS name instead of an IP literal
  | "range" // an address in a range no check is sent to
  | "unsupported" // TCP (the gateway gathers UDP only), a component other than 1 (rtcp-mux), port 0
  | "excess"; // the viewer already gave as many candidates as it may

export const CANDIDATE_DROP_REASONS: readonly CandidateDropReason[] = ["name", "range", "unsupported", "excess"];

export type CandidateDrops = Record<CandidateDropReason, number>;

export function noCandidateDrops(): CandidateDrops {
  return { name: 0, range: 0, unsupported: 0, excess: 0 };
}

/** One `candidate:` attribute value (RFC 8839 §5.1), its extensions reduced to the ones ICE uses. */
export interface RemoteCandidate {
  foundation: string;
  component: number;
  /** Lower-case transport, "udp" or "tcp" (others are refused as malformed). */
  transport: string;
  priority: number;
  /** As written: an IP literal or a name. */
  address: string;
  port: number;
  /** host, srflx, prflx, relay. */
  type: string;
  /** raddr/rport, kept only when raddr is an IP literal. */
  related: { address: string; port: number } | undefined;
  tcpType: string | undefined;
  generation: number | undefined;
  ufrag: string | undefined;
}

/** What the operator decides about client candidates (config `media.ice.*`). */
export interface CandidateRules {
  /** Loopback addresses are reachable (the media sockets are bound to loopback). */
  loopback: boolean;
  /** Private, CGNAT and unique-local addresses are taken (viewers on the site's own networks). */
  privateRanges: boolean;
  /** Most candidates in one offer or one PATCH; more is refused as bad input. */
  maxPerRequest: number;
  /** Most candidates one viewer may give in all; beyond that they are dropped as "excess". */
  maxPerViewer: number;
}

const ICE_CHAR = /^[A-Za-z0-9+/]{1,32}$/;
const TOKEN = /^[!#$%&'*+\-.^_`{|}~A-Za-z0-9]{1,64}$/;
/** A DNS name (RFC 1123 labels, with the `_` some stacks write): dropped, never resolved. */
const NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;
const CANDIDATE_TYPES = new Set(["host", "srflx", "prflx", "relay"]);
const MAX_PRIORITY = 2 ** 32 - 1;

/**
 * Reads one candidate: the attribute value with or without its `candidate:` prefix (an
 * `a=` prefix is the caller's to strip). Throws BadInputError with a short reason.
 */
export function parseCandidate(text: string): RemoteCandidate {
  if (typeof text !== "string" || text.length > 1024) throw new BadInputError("malformed ICE candidate");
  const body = text.startsWith("candidate:") ? text.slice(10) : text;
  const f = body.trim().split(/[ \t]+/);
  if (f.length < 8 || f[6] !== "typ") throw new BadInputError("malformed ICE candidate");
  const [foundation, componentText, transportText, priorityText, address, portText, , type] = f as [string, string, string, string, string, string, string, string];
  if (!ICE_CHAR.test(foundation)) throw new BadInputError("malformed ICE candidate: foundation");
  const component = decimal(componentText, 1, 256, "component");
  const transport = transportText.toLowerCase();
  if (transport !== "udp" && transport !== "tcp") throw new BadInputError("malformed ICE candidate: transport");
  const priority = decimal(priorityText, 1, MAX_PRIORITY, "priority");
  if (!isIpLiteral(address) && !NAME.test(address)) throw new BadInputError("malformed ICE candidate: address");
  const port = decimal(portText, 0, 65535, "port");
  if (!CANDIDATE_TYPES.has(type)) throw new BadInputError("malformed ICE candidate: type");
  let raddr: string | undefined;
  let rport: number | undefined;
  let tcpType: string | undefined;
  let generation: number | undefined;
  let ufrag: string | undefined;
  // RFC 8839 §5.1: rel-addr, rel-port, then extension name/value pairs.
  if ((f.length - 8) % 2 !== 0) throw new BadInputError("malformed ICE candidate: extension without a value");
  for (let i = 8; i < f.length; i += 2) {
    const name = f[i]!;
    const value = f[i + 1]!;
    if (!TOKEN.test(name) || value.length > 256) throw new BadInputError("malformed ICE candidate: extension");
    if (name === "raddr") raddr = value;
    else if (name === "rport") rport = decimal(value, 0, 65535, "rport");
    else if (name === "tcptype") tcpType = value;
    else if (name === "generation") generation = decimal(value, 0, 2 ** 31 - 1, "generation");
    else if (name === "ufrag") {
      if (!/^[A-Za-z0-9+/]{1,256}$/.test(value)) throw new BadInputError("malformed ICE candidate: ufrag");
      ufrag = value;
    }
  }
  const related = raddr !== undefined && rport !== undefined && isIpLiteral(raddr) ? { address: raddr, port: rport } : undefined;
  return { foundation, component, transport, priority, address, port, type, related, tcpType, generation, ufrag };
}

function decimal(text: string, min: number, max: number, what: string): number {
  if (!/^\d{1,10}$/.test(text)) throw new BadInputError(`malformed ICE candidate: ${what}`);
  const n = Number(text);
  if (n < min || n > max) throw new BadInputError(`malformed ICE candidate: ${what}`);
  return n;
}

/** Special-purpose ranges a viewer may sit in and be reached at. */
const PRIVATE_RANGES: ReadonlySet<SpecialPurpose> = new Set(["private", "cgnat", "unique-local"]);

/** "accept", or why the candidate is dropped. */
export function judgeCandidate(c: RemoteCandidate, rules: Pick<CandidateRules, "loopback" | "privateRanges">): "accept" | CandidateDropReason {
  if (!isIpLiteral(c.address)) return "name";
  if (c.transport !== "udp" || c.component !== 1 || c.port === 0) return "unsupported";
  // A zone names a link: link-local, never a place to send checks from a server.
  if (c.address.includes("%")) return "range";
  // IPv4-mapped IPv6 is labelled as such (never as public): a client has no reason to write one.
  const range = specialPurpose(c.address);
  if (range === undefined) return "accept";
  if (range === "loopback") return rules.loopback ? "accept" : "range";
  if (PRIVATE_RANGES.has(range)) return rules.privateRanges ? "accept" : "range";
  return "range";
}

/**
 * The candidate as werift reads it (single spaces, known extensions only, addresses as
 * Node writes them, so that a check from the viewer matches its candidate), with the
 * `candidate:` prefix.
 */
export function formatCandidate(c: RemoteCandidate): string {
  const ip = (a: string) => canonicalIp(a) ?? a;
  let s = `candidate:${c.foundation} ${c.component} ${c.transport} ${c.priority} ${ip(c.address)} ${c.port} typ ${c.type}`;
  if (c.related) s += ` raddr ${ip(c.related.address)} rport ${c.related.port}`;
  if (c.tcpType !== undefined) s += ` tcptype ${c.tcpType}`;
  if (c.generation !== undefined) s += ` generation ${c.generation}`;
  if (c.ufrag !== undefined) s += ` ufrag ${c.ufrag}`;
  return s;
}

/** An SDP's own candidates after screening (see screenCandidates). */
export interface ScreenedCandidates {
  /** The SDP's lines, accepted candidates rewritten plainly, the others left out. */
  lines: string[];
  /** Distinct candidates kept. */
  kept: number;
  dropped: CandidateDrops;
}

/**
 * Screens the candidates an offer carries itself (no trickle): `candidateLines` are the
 * indices of its `a=candidate:` lines. Each distinct candidate is judged once (bundled
 * sections repeat them); more distinct ones than `maxPerRequest`, or a malformed one, is
 * BadInputError. Once one is left out, `a=end-of-candidates` goes too.
 */
export function screenCandidates(lines: readonly string[], candidateLines: readonly number[], rules: CandidateRules): ScreenedCandidates {
  const dropped = noCandidateDrops();
  /** Each distinct candidate once: kept or not. */
  const decided = new Map<string, boolean>();
  const out: (string | undefined)[] = lines.slice();
  let kept = 0;
  for (const at of candidateLines) {
    const cand = parseCandidate(lines[at]!.replace(/^a=/, ""));
    const text = formatCandidate(cand);
    let keep = decided.get(text);
    if (keep === undefined) {
      if (decided.size >= rules.maxPerRequest) throw new BadInputError(`too many ICE candidates (at most ${rules.maxPerRequest})`);
      let verdict: "accept" | CandidateDropReason = judgeCandidate(cand, rules);
      if (verdict === "accept" && kept >= rules.maxPerViewer) verdict = "excess";
      keep = verdict === "accept";
      if (verdict === "accept") kept++;
      else dropped[verdict]++;
      decided.set(text, keep);
    }
    out[at] = keep ? `a=${text}` : undefined;
  }
  if (kept < decided.size) {
    // Once a candidate is left out, "that was all" (RFC 8838 §8.2) is no longer true: werift
    // would give up as soon as the rest failed, before the peer's own checks taught it the
    // address behind the name (a peer-reflexive candidate). The connect timeout ends the wait.
    for (let i = 0; i < out.length; i++) if (out[i]?.trim() === "a=end-of-candidates") out[i] = undefined;
  }
  return { lines: out.filter((l) => l !== undefined), kept, dropped };
}
