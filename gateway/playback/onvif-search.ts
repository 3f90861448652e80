/**
 * ONVIF Recording Search (ONVIF Recording Search Service Specification, `search.wsdl`,
 * namespace `http://www.onvif.org/ver10/search/wsdl`), without I/O: the SOAP 1.2 envelopes the
 * timeline needs and the readers of their answers.
 *
 *   FindRecordings(Scope, MaxMatches, KeepAliveTime)           → SearchToken
 *   GetRecordingSearchResults(SearchToken, MinResults, WaitTime) → ResultList { SearchState, RecordingInformation* }
 *   FindEvents(StartPoint, EndPoint, Scope, SearchFilter, IncludeStartState, …) → SearchToken
 *   GetEventSearchResults(SearchToken, MinResults, WaitTime)     → ResultList { SearchState, Result* }
 *
 * A recording's span is its `EarliestRecording`/`LatestRecording`; its gaps are the
 * `tns1:RecordingHistory/Track/State` events (`IsDataPresent` false → true), with the state at the
 * start point (`IncludeStartState`). Element names are matched without their prefixes (recorders
 * use different ones); anything malformed is an UpstreamError, never a crash.
 */
import { createHash, randomBytes } from "node:crypto";
import { XMLParser } from "fast-xml-parser";
import { UpstreamError } from "../../config/errors.ts";
import type { TimeRange } from "./recordings.ts";

export const SEARCH_NS = "http://www.onvif.org/ver10/search/wsdl";
export const SCHEMA_NS = "http://www.onvif.org/ver10/schema";
/** The SOAP action prefix of the search service (SOAP 1.2 `action` parameter of the content type). */
export const SEARCH_ACTION = `${SEARCH_NS}/`;
/** The topic of track data presence (Recording Search §"Recording events": RecordingHistory/Track/State). */
export const TRACK_STATE_TOPIC = "tns1:RecordingHistory/Track/State";

/** Most results one answer may hold (a hostile recorder cannot make us build more). */
export const MAX_RESULTS = 5000;

/** WS-Security UsernameToken with PasswordDigest (ONVIF Core §5.12): Base64(SHA-1(nonce + created + password)). */
export function usernameToken(username: string, password: string, now: number, nonce: Buffer = randomBytes(16)): string {
  const created = new Date(now).toISOString();
  const digest = createHash("sha1").update(Buffer.concat([nonce, Buffer.from(created), Buffer.from(password)])).digest("base64");
  return (
    `<wsse:Security s:mustUnderstand="1" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" ` +
    `xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><wsse:UsernameToken>` +
    `<wsse:Username>${xmlText(username)}</wsse:Username>` +
    `<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">${digest}</wsse:Password>` +
    `<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">${nonce.toString("base64")}</wsse:Nonce>` +
    `<wsu:Created>${created}</wsu:Created></wsse:UsernameToken></wsse:Security>`
  );
}

/** A SOAP 1.2 envelope around one search request (`body`), with an optional security header. */
export function envelope(body: string, security?: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tse="${SEARCH_NS}" xmlns:tt="${SCHEMA_NS}">` +
    (security ? `<s:Header>${security}</s:Header>` : "") +
    `<s:Body>${body}</s:Body></s:Envelope>`
  );
}

const scope = (recordingToken: string | undefined) => `<tse:Scope>${recordingToken ? `<tt:IncludedRecordings>${xmlText(recordingToken)}</tt:IncludedRecordings>` : ""}</tse:Scope>`;

export function findRecordings(recordingToken: string | undefined, keepAliveS: number): string {
  return `<tse:FindRecordings>${scope(recordingToken)}<tse:MaxMatches>100</tse:MaxMatches><tse:KeepAliveTime>PT${keepAliveS}S</tse:KeepAliveTime></tse:FindRecordings>`;
}

export function getRecordingSearchResults(searchToken: string, waitS: number): string {
  return `<tse:GetRecordingSearchResults><tse:SearchToken>${xmlText(searchToken)}</tse:SearchToken><tse:MinResults>1</tse:MinResults><tse:MaxResults>100</tse:MaxResults><tse:WaitTime>PT${waitS}S</tse:WaitTime></tse:GetRecordingSearchResults>`;
}

export function findEvents(recordingToken: string, span: TimeRange, keepAliveS: number): string {
  return (
    `<tse:FindEvents><tse:StartPoint>${iso(span.start)}</tse:StartPoint><tse:EndPoint>${iso(span.end)}</tse:EndPoint>${scope(recordingToken)}` +
    `<tse:SearchFilter><tt:TopicExpression Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">${TRACK_STATE_TOPIC}</tt:TopicExpression></tse:SearchFilter>` +
    `<tse:IncludeStartState>true</tse:IncludeStartState><tse:MaxMatches>${MAX_RESULTS}</tse:MaxMatches><tse:KeepAliveTime>PT${keepAliveS}S</tse:KeepAliveTime></tse:FindEvents>`
  );
}

export function getEventSearchResults(searchToken: string, waitS: number): string {
  return `<tse:GetEventSearchResults><tse:SearchToken>${xmlText(searchToken)}</tse:SearchToken><tse:MinResults>1</tse:MinResults><tse:MaxResults>${MAX_RESULTS}</tse:MaxResults><tse:WaitTime>PT${waitS}S</tse:WaitTime></tse:GetEventSearchResults>`;
}

export function endSearch(searchToken: string): string {
  return `<tse:EndSearch><tse:SearchToken>${xmlText(searchToken)}</tse:SearchToken></tse:EndSearch>`;
}

/** One recording as GetRecordingSearchResults describes it. */
export interface RecordingInfo {
  token: string;
  earliest: number | undefined;
  latest: number | undefined;
  /** Tokens of its video tracks. */
  videoTracks: string[];
}

/** One track-state event. */
export interface TrackStateEvent {
  time: number;
  track: string | undefined;
  present: boolean;
}

/** A search state: `Queued`, `Searching`, `Completed` or `Unknown`. */
export type SearchState = string;

const parser = new XMLParser({
  removeNSPrefix: true,
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: true,
  isArray: (name) => name === "RecordingInformation" || name === "Result" || name === "Track" || name === "SimpleItem",
});

/** The Body of a SOAP answer; a SOAP Fault or anything that is not SOAP is an UpstreamError. */
export function soapBody(xml: string): Record<string, unknown> {
  let doc: Record<string, unknown>;
  try {
    doc = parser.parse(xml) as Record<string, unknown>;
  } catch (err) {
    throw new UpstreamError("the recorder's search answer is not XML", { cause: err });
  }
  const body = obj(obj(doc["Envelope"])?.["Body"]);
  if (!body) throw new UpstreamError("the recorder's search answer is not a SOAP envelope");
  const fault = obj(body["Fault"]);
  if (fault) {
    const reason = text(obj(obj(fault["Reason"])?.["Text"]) ?? obj(fault["Reason"])?.["Text"]) ?? text(fault["faultstring"]) ?? "a SOAP fault";
    const sub = text(obj(obj(fault["Code"])?.["Subcode"])?.["Value"]);
    throw new UpstreamError(`the recorder refused the search: ${reason.slice(0, 200)}${sub ? ` (${sub.slice(0, 80)})` : ""}`);
  }
  return body;
}

/** The SearchToken of a FindRecordings/FindEvents answer. */
export function readSearchToken(xml: string, op: "FindRecordings" | "FindEvents"): string {
  const token = text(obj(soapBody(xml)[`${op}Response`])?.["SearchToken"]);
  if (!token) throw new UpstreamError(`${op}: no SearchToken in the recorder's answer`);
  return token;
}

export function readRecordingResults(xml: string): { state: SearchState; recordings: RecordingInfo[] } {
  const list = obj(obj(soapBody(xml)["GetRecordingSearchResultsResponse"])?.["ResultList"]);
  if (!list) throw new UpstreamError("GetRecordingSearchResults: no ResultList in the recorder's answer");
  const recordings: RecordingInfo[] = [];
  for (const r of arr(list["RecordingInformation"]).slice(0, MAX_RESULTS)) {
    const o = obj(r);
    const token = text(o?.["RecordingToken"]);
    if (!o || !token) continue;
    const videoTracks = arr(o["Track"])
      .map(obj)
      .filter((t) => text(t?.["TrackType"]) === "Video")
      .map((t) => text(t?.["TrackToken"]))
      .filter((t): t is string => !!t);
    recordings.push({ token, earliest: time(o["EarliestRecording"]), latest: time(o["LatestRecording"]), videoTracks });
  }
  return { state: text(list["SearchState"]) ?? "Unknown", recordings };
}

export function readEventResults(xml: string): { state: SearchState; events: TrackStateEvent[] } {
  const list = obj(obj(soapBody(xml)["GetEventSearchResultsResponse"])?.["ResultList"]);
  if (!list) throw new UpstreamError("GetEventSearchResults: no ResultList in the recorder's answer");
  const events: TrackStateEvent[] = [];
  for (const r of arr(list["Result"]).slice(0, MAX_RESULTS)) {
    const o = obj(r);
    const t = time(o?.["Time"]);
    const msg = obj(obj(o?.["Event"])?.["NotificationMessage"]);
    if (!o || t === undefined || !msg) continue;
    const topic = text(msg["Topic"]) ?? "";
    if (!/RecordingHistory\/Track\/State$/.test(topic.trim())) continue;
    const data = obj(obj(obj(msg["Message"])?.["Message"])?.["Data"]);
    const item = arr(data?.["SimpleItem"]).map(obj).find((i) => i?.["@Name"] === "IsDataPresent");
    const v = text(item?.["@Value"]);
    if (v !== "true" && v !== "false") continue;
    events.push({ time: t, track: text(o["TrackToken"]), present: v === "true" });
  }
  return { state: text(list["SearchState"]) ?? "Unknown", events };
}

/**
 * The recorded ranges within `span`, from a recording's span and its track-state events (the
 * state at the start point first): data present from a `true` to the next `false`. Events of
 * other tracks than `track` are ignored when `track` is given. Sorted, disjoint.
 */
export function rangesFromEvents(span: TimeRange, events: readonly TrackStateEvent[], track: string | undefined): TimeRange[] {
  const mine = events.filter((e) => !track || !e.track || e.track === track).sort((a, b) => a.time - b.time);
  const out: TimeRange[] = [];
  let since: number | undefined;
  // Without any event the recording is taken as present over its whole span.
  if (mine.length === 0) since = span.start;
  for (const e of mine) {
    if (e.present && since === undefined) since = Math.max(e.time, span.start);
    else if (!e.present && since !== undefined) {
      const end = Math.min(e.time, span.end);
      if (end > since) out.push({ start: since, end });
      since = undefined;
    }
  }
  if (since !== undefined && span.end > since) out.push({ start: since, end: span.end });
  return out;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}
function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : v === undefined ? [] : [v];
}
function text(v: unknown): string | undefined {
  if (typeof v === "string") return v.trim() || undefined;
  const o = obj(v);
  return o && typeof o["#text"] === "string" ? (o["#text"] as string).trim() || undefined : undefined;
}
/** An xs:dateTime; a time without a zone is taken as UTC (ONVIF devices speak UTC). */
function time(v: unknown): number | undefined {
  const s = text(v);
  if (!s || s.length > 40 || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$/.test(s)) return undefined;
  const t = Date.parse(/(Z|[+-]\d{2}:\d{2})$/.test(s) ? s : `${s}Z`);
  return Number.isFinite(t) ? t : undefined;
}
function iso(ms: number): string {
  return new Date(ms).toISOString();
}
function xmlText(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
