/**
 * The timeline from a recorder's ONVIF Recording Search service: the gateway (the cameras'
 * `playback.search`) against a SOAP responder serving recordings with known recorded ranges
 * (test/peers/onvif-search-responder.ts). `GET /api/cameras/:id/recordings` answers the recorder's
 * ranges (`source: "onvif-search"`), with the camera's credentials as a WS-Security digest; a broken
 * or refusing search service, or an ambiguous recording, falls back to the retention model and says
 * why (`searchError`).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/load.ts";
import { silentLogger } from "../../config/log.ts";
import { startGateway, type Gateway } from "../../gateway/gateway.ts";
import { startSearchResponder, type SearchResponder } from "../peers/onvif-search-responder.ts";

const H = 3_600_000;
const D = 24 * H;
const now = Math.floor(Date.now() / 1000) * 1000;
const lobbyRanges: [number, number][] = [
  [now - 3 * D, now - 2 * D],
  [now - 2 * D + H, now - 5 * H],
  [now - 4 * H, now - 60_000],
];

let lobby: SearchResponder;
let site: SearchResponder;
let gw: Gateway;

interface Answer {
  ranges: { start: string; end: string }[];
  source: string;
  retention: { from: string; to: string };
  searchError?: string;
}

async function recordings(camera: string, from?: number, to?: number): Promise<Answer> {
  const q = from === undefined ? "" : `?from=${from}&to=${to}`;
  const r = await fetch(`${gw.url}/api/cameras/${camera}/recordings${q}`);
  expect(r.status).toBe(200);
  return (await r.json()) as Answer;
}
const ms = (a: Answer) => a.ranges.map((r) => [Date.parse(r.start), Date.parse(r.end)]);

beforeAll(async () => {
  lobby = await startSearchResponder({ recordings: [{ token: "REC_LOBBY", ranges: lobbyRanges }], username: "onvif", password: "s3cret" });
  site = await startSearchResponder({
    recordings: [
      { token: "REC_A", ranges: [[now - 10 * H, now - 9 * H]] },
      { token: "REC_B", ranges: [[now - 8 * H, now - 7 * H], [now - 6 * H, now - 5 * H]] },
    ],
  });
  const config = parseConfig(
    {
      server: { host: "127.0.0.1", port: 0 },
      auth: { mode: "none" },
      log: { level: "silent" },
      cameras: [
        // Unreachable cameras: the timeline needs only the search service.
        { id: "lobby", url: "rtsp://127.0.0.1:9/lobby", username: "onvif", password: "s3cret", playback: { retentionDays: 7, search: { url: lobby.url, cacheSeconds: 0 } } },
        { id: "wrongpw", url: "rtsp://127.0.0.1:9/lobby", username: "onvif", password: "nope", playback: { search: { url: lobby.url } } },
        { id: "ambiguous", url: "rtsp://127.0.0.1:9/a", playback: { search: { url: site.url } } },
        { id: "b", url: "rtsp://127.0.0.1:9/b", playback: { search: { url: site.url, recordingToken: "REC_B", cacheSeconds: 60 } } },
        { id: "plain", url: "rtsp://127.0.0.1:9/plain", playback: { retentionDays: 2 } },
      ],
    },
    {},
  );
  gw = await startGateway({ config, log: silentLogger });
}, 60_000);

afterAll(async () => {
  await gw?.close("test done");
  await lobby?.close();
  await site?.close();
});

describe("the timeline from ONVIF recording search", () => {
  it("answers the recorder's ranges and span, asking with the camera's credentials", async () => {
    const a = await recordings("lobby", now - 4 * D, now);
    expect(a.source).toBe("onvif-search");
    expect(a.searchError).toBeUndefined();
    expect(ms(a)).toEqual(lobbyRanges);
    expect(a.retention).toEqual({ from: new Date(lobbyRanges[0]![0]).toISOString(), to: new Date(lobbyRanges[2]![1]).toISOString() });
    const ops = lobby.requests.map((r) => r.op);
    expect(ops).toEqual(["FindRecordings", "GetRecordingSearchResults", "FindEvents", "GetEventSearchResults", "EndSearch"]);
    expect(lobby.requests.every((r) => r.authorized)).toBe(true);
    expect(lobby.requests[0]!.action).toBe("http://www.onvif.org/ver10/search/wsdl/FindRecordings");
    // The events were asked for the asked span within the recording, of the one recording.
    expect(lobby.requests[2]!.body).toContain("<tt:IncludedRecordings>REC_LOBBY</tt:IncludedRecordings>");
    expect(lobby.requests[2]!.body).toContain(`<tse:StartPoint>${new Date(lobbyRanges[0]![0]).toISOString()}</tse:StartPoint>`);
  });

  it("clips to the asked span: a span starting in a gap starts at the next recorded range", async () => {
    const a = await recordings("lobby", now - 2 * D + 30 * 60_000, now - 4 * H - 30 * 60_000);
    expect(ms(a)).toEqual([[now - 2 * D + H, now - 5 * H]]);
    // Without from/to: the camera's retention window (7 days) up to now.
    expect(ms(await recordings("lobby"))).toEqual(lobbyRanges);
  });

  it("falls back to the retention model when the search service fails, and recovers", async () => {
    lobby.failing = true;
    const a = await recordings("lobby", now - 4 * D, now);
    expect(a.source).toBe("retention");
    expect(a.searchError).toMatch(/the recorder refused the search: The search service is out of order/);
    expect(a.ranges).toHaveLength(1);
    lobby.failing = false;
    expect((await recordings("lobby", now - 4 * D, now)).source).toBe("onvif-search");
  });

  it("says why when the recorder refuses the credentials or holds several recordings", async () => {
    const denied = await recordings("wrongpw", now - D, now);
    expect(denied.source).toBe("retention");
    expect(denied.searchError).toMatch(/Sender not Authorized/);
    const ambiguous = await recordings("ambiguous", now - D, now);
    expect(ambiguous.source).toBe("retention");
    expect(ambiguous.searchError).toMatch(/2 recordings: set playback.search.recordingToken \(REC_A, REC_B\)/);
  });

  it("searches the configured recording, and reuses an answer for cacheSeconds", async () => {
    const before = site.requests.length;
    const a = await recordings("b", now - D, now);
    expect(a.source).toBe("onvif-search");
    expect(ms(a)).toEqual([
      [now - 8 * H, now - 7 * H],
      [now - 6 * H, now - 5 * H],
    ]);
    expect(site.requests[before]!.body).toContain("<tt:IncludedRecordings>REC_B</tt:IncludedRecordings>");
    const asked = site.requests.length;
    expect(ms(await recordings("b", now - D, now))).toEqual(ms(a));
    expect(site.requests.length).toBe(asked);
  });

  it("a camera without search keeps the retention model", async () => {
    const a = await recordings("plain");
    expect(a.source).toBe("retention");
    expect(a.searchError).toBeUndefined();
  });
});
