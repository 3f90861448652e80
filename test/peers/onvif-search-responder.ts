/**
 * An ONVIF Recording Search service for tests (SOAP 1.2 over HTTP on 127.0.0.1, port 0), serving
 * recordings with known recorded ranges the way a Profile G recorder answers: FindRecordings →
 * SearchToken, GetRecordingSearchResults → RecordingInformation (EarliestRecording, LatestRecording,
 * tracks), FindEvents (track data presence) → SearchToken, GetEventSearchResults → the
 * `tns1:RecordingHistory/Track/State` events with `IsDataPresent` inside the asked span plus the
 * state at its start, EndSearch. Checks the WS-Security UsernameToken digest when a password is set
 * (a wrong one gets a SOAP fault `ter:NotAuthorized` with 400, as devices answer).
 *
 *   await using s = await startSearchResponder({ recordings: [{ token: "rec1", ranges: [[a, b], [c, d]] }], username: "u", password: "p" });
 *   s.url          // http://127.0.0.1:<port>/onvif/search_service
 *   s.requests     // [{ op: "FindRecordings", action, authorized }, …]
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface SearchRecording {
  token: string;
  /** Recorded ranges, [from, to) Unix ms, sorted and disjoint. */
  ranges: ReadonlyArray<readonly [number, number]>;
}

export interface SearchResponderOptions {
  recordings: SearchRecording[];
  username?: string;
  password?: string;
}

export interface SearchRequest {
  op: string;
  /** The SOAP 1.2 action from the content type. */
  action: string | undefined;
  /** The digest matched (or no password is required). */
  authorized: boolean;
  body: string;
}

export interface SearchResponder extends AsyncDisposable {
  readonly url: string;
  readonly requests: SearchRequest[];
  /** Answer every request with a SOAP fault (the service broken) or not. */
  failing: boolean;
  close(): Promise<void>;
}

const iso = (ms: number) => new Date(ms).toISOString();
const tag = (xml: string, name: string) => new RegExp(`<(?:\\w+:)?${name}[^>]*>([^<]*)</(?:\\w+:)?${name}>`).exec(xml)?.[1];

function soap(body: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" ` +
    `xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:tse="http://www.onvif.org/ver10/search/wsdl" ` +
    `xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tns1="http://www.onvif.org/ver10/topics">` +
    `<SOAP-ENV:Body>${body}</SOAP-ENV:Body></SOAP-ENV:Envelope>`
  );
}

function fault(subcode: string, reason: string): string {
  return soap(
    `<SOAP-ENV:Fault><SOAP-ENV:Code><SOAP-ENV:Value>SOAP-ENV:Sender</SOAP-ENV:Value><SOAP-ENV:Subcode><SOAP-ENV:Value>${subcode}</SOAP-ENV:Value></SOAP-ENV:Subcode></SOAP-ENV:Code>` +
      `<SOAP-ENV:Reason><SOAP-ENV:Text xml:lang="en">${reason}</SOAP-ENV:Text></SOAP-ENV:Reason></SOAP-ENV:Fault>`,
  );
}

export async function startSearchResponder(o: SearchResponderOptions): Promise<SearchResponder> {
  const requests: SearchRequest[] = [];
  const searches = new Map<string, { kind: "recordings"; scope: string | undefined } | { kind: "events"; scope: string; from: number; to: number }>();
  let next = 0;
  const state = { failing: false };

  const authorized = (xml: string): boolean => {
    if (!o.password) return true;
    const user = tag(xml, "Username");
    const digest = tag(xml, "Password");
    const nonce = tag(xml, "Nonce");
    const created = tag(xml, "Created");
    if (user !== o.username || !digest || !nonce || !created) return false;
    const want = createHash("sha1").update(Buffer.concat([Buffer.from(nonce, "base64"), Buffer.from(created), Buffer.from(o.password)])).digest("base64");
    return want === digest;
  };

  const answer = (op: string, xml: string): [number, string] => {
    switch (op) {
      case "FindRecordings": {
        const token = `S${++next}`;
        searches.set(token, { kind: "recordings", scope: tag(xml, "IncludedRecordings") });
        return [200, soap(`<tse:FindRecordingsResponse><tse:SearchToken>${token}</tse:SearchToken></tse:FindRecordingsResponse>`)];
      }
      case "GetRecordingSearchResults": {
        const s = searches.get(tag(xml, "SearchToken") ?? "");
        if (s?.kind !== "recordings") return [400, fault("ter:InvalidArgVal", "Unknown search token")];
        const infos = o.recordings
          .filter((r) => !s.scope || r.token === s.scope)
          .map(
            (r) =>
              `<tt:RecordingInformation><tt:RecordingToken>${r.token}</tt:RecordingToken><tt:Source><tt:SourceId>src</tt:SourceId><tt:Name>cam</tt:Name><tt:Location/><tt:Description/><tt:Address/></tt:Source>` +
              `<tt:EarliestRecording>${iso(r.ranges[0]![0])}</tt:EarliestRecording><tt:LatestRecording>${iso(r.ranges.at(-1)![1])}</tt:LatestRecording><tt:Content>cam</tt:Content>` +
              `<tt:Track><tt:TrackToken>VIDEO001</tt:TrackToken><tt:TrackType>Video</tt:TrackType><tt:Description>video</tt:Description><tt:DataFrom>${iso(r.ranges[0]![0])}</tt:DataFrom><tt:DataTo>${iso(r.ranges.at(-1)![1])}</tt:DataTo></tt:Track>` +
              `<tt:Track><tt:TrackToken>AUDIO001</tt:TrackToken><tt:TrackType>Audio</tt:TrackType><tt:Description>audio</tt:Description><tt:DataFrom>${iso(r.ranges[0]![0])}</tt:DataFrom><tt:DataTo>${iso(r.ranges[0]![0] + 1000)}</tt:DataTo></tt:Track>` +
              `<tt:RecordingStatus>Recording</tt:RecordingStatus></tt:RecordingInformation>`,
          )
          .join("");
        return [200, soap(`<tse:GetRecordingSearchResultsResponse><tse:ResultList><tt:SearchState>Completed</tt:SearchState>${infos}</tse:ResultList></tse:GetRecordingSearchResultsResponse>`)];
      }
      case "FindEvents": {
        const scope = tag(xml, "IncludedRecordings");
        const from = Date.parse(tag(xml, "StartPoint") ?? "");
        const to = Date.parse(tag(xml, "EndPoint") ?? "");
        if (!scope || !Number.isFinite(from) || !Number.isFinite(to)) return [400, fault("ter:InvalidArgVal", "Bad FindEvents")];
        const token = `S${++next}`;
        searches.set(token, { kind: "events", scope, from, to });
        return [200, soap(`<tse:FindEventsResponse><tse:SearchToken>${token}</tse:SearchToken></tse:FindEventsResponse>`)];
      }
      case "GetEventSearchResults": {
        const s = searches.get(tag(xml, "SearchToken") ?? "");
        if (s?.kind !== "events") return [400, fault("ter:InvalidArgVal", "Unknown search token")];
        const rec = o.recordings.find((r) => r.token === s.scope);
        const events: [number, string, boolean][] = [];
        if (rec) {
          // The state at the start point (IncludeStartState), then every change inside the span.
          const at = rec.ranges.some(([a, b]) => a <= s.from && s.from < b);
          events.push([s.from, "VIDEO001", at]);
          // An audio track event the client must not mistake for the video's.
          events.push([s.from, "AUDIO001", false]);
          for (const [a, b] of rec.ranges) {
            if (a > s.from && a < s.to) events.push([a, "VIDEO001", true]);
            if (b > s.from && b < s.to) events.push([b, "VIDEO001", false]);
          }
        }
        const results = events
          .map(
            ([t, track, present]) =>
              `<tt:Result><tt:RecordingToken>${s.scope}</tt:RecordingToken><tt:TrackToken>${track}</tt:TrackToken><tt:Time>${iso(t)}</tt:Time>` +
              `<tt:Event><wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">tns1:RecordingHistory/Track/State</wsnt:Topic>` +
              `<wsnt:Message><tt:Message UtcTime="${iso(t)}" PropertyOperation="Changed"><tt:Source><tt:SimpleItem Name="Track" Value="${track}"/></tt:Source>` +
              `<tt:Data><tt:SimpleItem Name="IsDataPresent" Value="${present}"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage></tt:Event>` +
              `<tt:StartStateEvent>${t === s.from}</tt:StartStateEvent></tt:Result>`,
          )
          .join("");
        return [200, soap(`<tse:GetEventSearchResultsResponse><tse:ResultList><tt:SearchState>Completed</tt:SearchState>${results}</tse:ResultList></tse:GetEventSearchResultsResponse>`)];
      }
      case "EndSearch":
        searches.delete(tag(xml, "SearchToken") ?? "");
        return [200, soap(`<tse:EndSearchResponse><tse:Endpoint>${iso(Date.now())}</tse:Endpoint></tse:EndSearchResponse>`)];
      default:
        return [400, fault("ter:ActionNotSupported", `Unknown operation ${op}`)];
    }
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const xml = Buffer.concat(chunks).toString("utf8");
      const op = /<s:Body><(?:\w+:)?(\w+)/.exec(xml)?.[1] ?? /<(?:\w+:)?Body[^>]*>\s*<(?:\w+:)?(\w+)/.exec(xml)?.[1] ?? "";
      const action = /action="([^"]+)"/.exec(req.headers["content-type"] ?? "")?.[1];
      const ok = authorized(xml);
      requests.push({ op, action, authorized: ok, body: xml });
      const [status, body] = state.failing
        ? [500, fault("ter:Action", "The search service is out of order")]
        : ok
          ? answer(op, xml)
          : [400, fault("ter:NotAuthorized", "Sender not Authorized")];
      res.writeHead(status, { "content-type": "application/soap+xml; charset=utf-8" }).end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  return {
    url: `http://127.0.0.1:${port}/onvif/search_service`,
    requests,
    get failing() {
      return state.failing;
    },
    set failing(v: boolean) {
      state.failing = v;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
