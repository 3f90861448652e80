/**
 * The timeline's answer where a camera's recorder offers ONVIF recording search
 * (`playback.search.url`, the recorder's search service address): FindRecordings and
 * GetRecordingSearchResults for the recording's span, FindEvents and GetEventSearchResults for
 * its gaps (track data presence), over SOAP 1.2 with a WS-Security digest of the camera's
 * credentials. Only the configured URL is ever contacted (no redirects, no address from an
 * answer). When the search fails, the retention model answers and says why (`searchError`).
 *
 *   const catalog = new RecordingsCatalog({ retention, searchOf, log });
 *   await catalog.answer("lobby", { from, to });   // { ranges, source: "onvif-search" | "retention", … }
 */
import { NotFoundError, UpstreamError, isGatehouseError } from "../../config/errors.ts";
import type { Logger } from "../../config/log.ts";
import type { CameraConfig } from "../../config/schema.ts";
import {
  endSearch,
  envelope,
  findEvents,
  findRecordings,
  getEventSearchResults,
  getRecordingSearchResults,
  rangesFromEvents,
  readEventResults,
  readRecordingResults,
  readSearchToken,
  SEARCH_ACTION,
  usernameToken,
  type TrackStateEvent,
} from "./onvif-search.ts";
import { querySpan, type RecordingsAnswer, type RetentionRecordings, type TimeRange } from "./recordings.ts";

export interface OnvifSearchOptions {
  /** The search service address (http:// or https://), from configuration only. */
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  /** The recording to search; undefined: the recorder's only one (several: an error asking for it). */
  recordingToken?: string | undefined;
  /** One SOAP request gives up after this, ms. */
  timeoutMs: number;
  fetch?: typeof fetch;
  clock?: () => number;
}

/** Answers larger than this are refused (bytes). */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
/** GetResults polls while the recorder says it is still searching. */
const MAX_POLLS = 20;

export class OnvifSearchClient {
  private readonly o: OnvifSearchOptions;
  private readonly fetch: typeof fetch;
  private readonly clock: () => number;

  constructor(o: OnvifSearchOptions) {
    this.o = o;
    this.fetch = o.fetch ?? fetch;
    this.clock = o.clock ?? Date.now;
  }

  /** What the recording holds within `span`, and its whole span (earliest to latest). */
  async ranges(span: TimeRange): Promise<{ ranges: TimeRange[]; recording: TimeRange }> {
    const rec = await this.recording();
    if (rec.earliest === undefined || rec.latest === undefined) return { ranges: [], recording: { start: span.start, end: span.start } };
    const recording = { start: rec.earliest, end: rec.latest };
    const within = { start: Math.max(span.start, recording.start), end: Math.min(span.end, recording.end) };
    if (within.end <= within.start) return { ranges: [], recording };
    const events = await this.trackEvents(rec.token, within);
    return { ranges: rangesFromEvents(within, events, rec.videoTracks[0]), recording };
  }

  private async recording() {
    const token = readSearchToken(await this.call("FindRecordings", findRecordings(this.o.recordingToken, 10)), "FindRecordings");
    const found = [];
    for (let i = 0; i < MAX_POLLS; i++) {
      const r = readRecordingResults(await this.call("GetRecordingSearchResults", getRecordingSearchResults(token, 1)));
      found.push(...r.recordings);
      if (r.state === "Completed" || r.state === "Unknown") break;
    }
    const mine = this.o.recordingToken ? found.filter((r) => r.token === this.o.recordingToken) : found;
    if (mine.length === 0) throw new UpstreamError(this.o.recordingToken ? `the recorder has no recording "${this.o.recordingToken}"` : "the recorder has no recordings");
    if (mine.length > 1) throw new UpstreamError(`the recorder has ${mine.length} recordings: set playback.search.recordingToken (${mine.slice(0, 5).map((r) => r.token).join(", ")})`);
    return mine[0]!;
  }

  private async trackEvents(recordingToken: string, span: TimeRange): Promise<TrackStateEvent[]> {
    const token = readSearchToken(await this.call("FindEvents", findEvents(recordingToken, span, 10)), "FindEvents");
    const events: TrackStateEvent[] = [];
    try {
      for (let i = 0; i < MAX_POLLS; i++) {
        const r = readEventResults(await this.call("GetEventSearchResults", getEventSearchResults(token, 1)));
        events.push(...r.events);
        if (r.state === "Completed" || r.state === "Unknown") break;
      }
    } finally {
      await this.call("EndSearch", endSearch(token)).catch(() => undefined);
    }
    return events;
  }

  private async call(op: string, body: string): Promise<string> {
    const security = this.o.username ? usernameToken(this.o.username, this.o.password ?? "", this.clock()) : undefined;
    let res: Response;
    try {
      res = await this.fetch(this.o.url, {
        method: "POST",
        headers: { "content-type": `application/soap+xml; charset=utf-8; action="${SEARCH_ACTION}${op}"` },
        body: envelope(body, security),
        redirect: "error",
        signal: AbortSignal.timeout(this.o.timeoutMs),
      });
    } catch (err) {
      throw new UpstreamError(`${op}: the recorder's search service cannot be reached`, { cause: err });
    }
    const length = Number(res.headers.get("content-length") ?? 0);
    if (length > MAX_ANSWER_BYTES) throw new UpstreamError(`${op}: the recorder's answer is too large`);
    const text = await res.text();
    if (text.length > MAX_ANSWER_BYTES) throw new UpstreamError(`${op}: the recorder's answer is too large`);
    // A SOAP fault comes with 400/500: read it for its reason.
    if (!res.ok && !/Fault/.test(text)) throw new UpstreamError(`${op}: the recorder's search service answered ${res.status}`);
    return text;
  }
}

export interface RecordingsCatalogOptions {
  retention: RetentionRecordings;
  /** The camera's search client, undefined where none is configured. */
  searchOf(cameraId: string): { client: OnvifSearchClient; cacheMs: number } | undefined;
  log: Logger;
  clock?: () => number;
}

const MAX_CACHED = 256;

/** The recordings API's answers: ONVIF search where configured, else (or when it fails) the retention model. */
export class RecordingsCatalog {
  private readonly o: RecordingsCatalogOptions;
  private readonly clock: () => number;
  /** Answers by camera and span, while fresh; in-flight searches shared. */
  private readonly cache = new Map<string, { at: number; answer: Promise<RecordingsAnswer> }>();

  constructor(o: RecordingsCatalogOptions) {
    this.o = o;
    this.clock = o.clock ?? Date.now;
  }

  async answer(cameraId: string, query: { from?: unknown; to?: unknown }): Promise<RecordingsAnswer> {
    const search = this.o.searchOf(cameraId);
    if (!search) return this.o.retention.answer(cameraId, query);
    const win = this.o.retention.window(cameraId);
    if (!win) throw new NotFoundError("this camera has no recordings");
    const span = querySpan(win, query);
    const now = this.clock();
    // Times rounded to a second: a timeline panning by pixels asks again, not a new search each time.
    const key = `${cameraId}\n${Math.floor(span.start / 1000)}\n${Math.floor(span.end / 1000)}`;
    const hit = this.cache.get(key);
    if (hit && now - hit.at < search.cacheMs) return hit.answer;
    const answer = this.search(cameraId, search.client, span, query);
    this.cache.set(key, { at: now, answer });
    if (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
    return answer;
  }

  private async search(cameraId: string, client: OnvifSearchClient, span: TimeRange, query: { from?: unknown; to?: unknown }): Promise<RecordingsAnswer> {
    const iso = (ms: number) => new Date(ms).toISOString();
    try {
      const r = await client.ranges(span);
      return {
        ranges: r.ranges.map((x) => ({ start: iso(x.start), end: iso(x.end) })),
        source: "onvif-search",
        retention: { from: iso(r.recording.start), to: iso(r.recording.end) },
      };
    } catch (err) {
      if (!isGatehouseError(err)) throw err;
      this.o.log.warn("recording search failed; the timeline shows the retention window", { camera: cameraId, reason: err.message });
      // Not cached long: the next look asks the recorder again.
      for (const [k, v] of this.cache) if (k.startsWith(`${cameraId}\n`)) v.at = Math.min(v.at, this.clock() - 1e12);
      return { ...this.o.retention.answer(cameraId, query), searchError: err.message };
    }
  }
}

/** The catalog for the gateway's cameras: a search client per camera with `playback.search`, rebuilt when its settings change. */
export function recordingsCatalog(retention: RetentionRecordings, camera: (id: string) => CameraConfig | undefined, log: Logger): RecordingsCatalog {
  const clients = new Map<string, { settings: string; client: OnvifSearchClient }>();
  return new RecordingsCatalog({
    retention,
    log,
    searchOf(id) {
      const c = camera(id);
      const s = c?.playback?.search;
      if (!c || !s) return undefined;
      const settings = JSON.stringify([s, c.username, c.password]);
      let entry = clients.get(id);
      if (entry?.settings !== settings) {
        entry = { settings, client: new OnvifSearchClient({ url: s.url, username: c.username, password: c.password, recordingToken: s.recordingToken, timeoutMs: s.timeoutMs }) };
        clients.set(id, entry);
      }
      return { client: entry.client, cacheMs: s.cacheSeconds * 1000 };
    },
  });
}
