/** ONVIF Recording Search without I/O (gateway/playback/onvif-search.ts): envelopes, readers, ranges, hostile answers. */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { UpstreamError } from "../../config/errors.ts";
import { envelope, findEvents, rangesFromEvents, readEventResults, readRecordingResults, readSearchToken, soapBody, usernameToken } from "../../gateway/playback/onvif-search.ts";

const T = Date.UTC(2026, 11, 6, 10, 0, 0);
const wrap = (body: string) => `<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>${body}</e:Body></e:Envelope>`;

describe("ONVIF recording search", () => {
  it("builds a FindEvents for track data presence in a span of one recording", () => {
    const x = envelope(findEvents("REC<1>", { start: T, end: T + 3_600_000 }, 10));
    expect(x).toContain("<tse:StartPoint>2026-12-06T10:00:00.000Z</tse:StartPoint><tse:EndPoint>2026-12-06T11:00:00.000Z</tse:EndPoint>");
    expect(x).toContain("<tt:IncludedRecordings>REC&lt;1&gt;</tt:IncludedRecordings>");
    expect(x).toContain(">tns1:RecordingHistory/Track/State</tt:TopicExpression>");
    expect(x).toContain("<tse:IncludeStartState>true</tse:IncludeStartState>");
  });

  it("digests the password as WS-Security UsernameToken does", () => {
    const nonce = Buffer.alloc(16, 7);
    const x = usernameToken("admin", "pw", T, nonce);
    const want = createHash("sha1").update(Buffer.concat([nonce, Buffer.from("2026-12-06T10:00:00.000Z"), Buffer.from("pw")])).digest("base64");
    expect(x).toContain(`#PasswordDigest">${want}</wsse:Password>`);
    expect(x).not.toContain(">pw<");
  });

  it("reads tokens, recordings and events whatever the prefixes", () => {
    expect(readSearchToken(wrap(`<x:FindRecordingsResponse xmlns:x="s"><x:SearchToken> S1 </x:SearchToken></x:FindRecordingsResponse>`), "FindRecordings")).toBe("S1");
    const r = readRecordingResults(
      wrap(
        `<a:GetRecordingSearchResultsResponse xmlns:a="a" xmlns:b="b"><a:ResultList><b:SearchState>Completed</b:SearchState><b:RecordingInformation><b:RecordingToken>R</b:RecordingToken>` +
          `<b:EarliestRecording>2026-12-06T10:00:00Z</b:EarliestRecording><b:LatestRecording>2026-12-06T11:00:00</b:LatestRecording><b:Track><b:TrackToken>V</b:TrackToken><b:TrackType>Video</b:TrackType></b:Track></b:RecordingInformation></a:ResultList></a:GetRecordingSearchResultsResponse>`,
      ),
    );
    expect(r).toEqual({ state: "Completed", recordings: [{ token: "R", earliest: T, latest: T + 3_600_000, videoTracks: ["V"] }] });
    const e = readEventResults(
      wrap(
        `<GetEventSearchResultsResponse><ResultList><SearchState>Completed</SearchState><Result><TrackToken>V</TrackToken><Time>2026-12-06T10:00:00Z</Time><Event><NotificationMessage><Topic>tns1:RecordingHistory/Track/State</Topic>` +
          `<Message><Message><Data><SimpleItem Name="IsDataPresent" Value="false"/></Data></Message></Message></NotificationMessage></Event></Result>` +
          `<Result><Time>not a time</Time></Result><Result><Time>2026-12-06T10:00:00Z</Time><Event><NotificationMessage><Topic>tns1:Other</Topic></NotificationMessage></Event></Result></ResultList></GetEventSearchResultsResponse>`,
      ),
    );
    expect(e).toEqual({ state: "Completed", events: [{ time: T, track: "V", present: false }] });
  });

  it("turns track states into ranges within the span", () => {
    const span = { start: T, end: T + 100_000 };
    const ev = (t: number, present: boolean, track = "V") => ({ time: T + t, track, present });
    expect(rangesFromEvents(span, [ev(0, true), ev(20_000, false), ev(50_000, true), ev(50_000, false, "A")], "V")).toEqual([
      { start: T, end: T + 20_000 },
      { start: T + 50_000, end: T + 100_000 },
    ]);
    expect(rangesFromEvents(span, [ev(0, false), ev(70_000, true), ev(80_000, false)], "V")).toEqual([{ start: T + 70_000, end: T + 80_000 }]);
    expect(rangesFromEvents(span, [], "V")).toEqual([span]);
  });

  it("turns faults, non-XML and non-SOAP answers into UpstreamError", () => {
    const fault = wrap(`<e:Fault><e:Code><e:Value>e:Sender</e:Value><e:Subcode><e:Value>ter:NotAuthorized</e:Value></e:Subcode></e:Code><e:Reason><e:Text xml:lang="en">Sender not Authorized</e:Text></e:Reason></e:Fault>`);
    expect(() => soapBody(fault)).toThrow(/the recorder refused the search: Sender not Authorized \(ter:NotAuthorized\)/);
    for (const bad of ["", "<html>hello</html>", "<<<>>>", "{\"json\":1}", wrap("<FindRecordingsResponse/>")]) {
      expect(() => readSearchToken(bad, "FindRecordings")).toThrow(UpstreamError);
    }
    expect(() => readRecordingResults(wrap("<GetRecordingSearchResultsResponse/>"))).toThrow(UpstreamError);
  });
});
