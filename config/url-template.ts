/**
 * Playback URL templates (camera key `playback.url` with `mode: url`), for recorders that
 * take the start time in the URL instead of ONVIF replay:
 * `rtsp://nvr/Streaming/tracks/101?starttime={start:%Y%m%dT%H%M%SZ}`. Pure; the config
 * checks templates with it at load, the playback session fills them.
 */
import { BadInputError } from "./errors.ts";

/**
 * Fills `{start:<format>}` and `{end:<format>}` in a playback URL template with UTC
 * times. Formats are strftime-like: `%Y` year, `%m` month, `%d` day, `%H` hour, `%M`
 * minute, `%S` second, `%s` Unix seconds, `%%` a percent sign; anything else is copied.
 * `{start}` alone is `%Y%m%dT%H%M%SZ`. `end` defaults to `start` + 24 h. Each value is
 * percent-encoded where a URL needs it. Throws BadInputError for an unknown field or
 * directive (so a typo fails at start, not at a guard's first seek).
 */
export function expandUrlTemplate(template: string, start: number, end: number = start + 86_400_000): string {
  return template.replace(/\{([a-z]+)(?::([^}]*))?\}/gi, (_all, field: string, format: string | undefined) => {
    const t = field === "start" ? start : field === "end" ? end : undefined;
    if (t === undefined) throw new BadInputError(`unknown field {${field}} in playback URL template (use {start} or {end})`);
    return encodeURIComponent(strftimeUtc(format ?? "%Y%m%dT%H%M%SZ", t)).replace(/%3A/gi, ":");
  });
}

/** Checks a template without a time at hand: throws BadInputError as expandUrlTemplate would. */
export function checkUrlTemplate(template: string): void {
  expandUrlTemplate(template, Date.UTC(2026, 0, 1));
}

function strftimeUtc(format: string, unixMs: number): string {
  const d = new Date(unixMs);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return format.replace(/%(.)/g, (_m, c: string) => {
    switch (c) {
      case "Y":
        return p(d.getUTCFullYear(), 4);
      case "m":
        return p(d.getUTCMonth() + 1);
      case "d":
        return p(d.getUTCDate());
      case "H":
        return p(d.getUTCHours());
      case "M":
        return p(d.getUTCMinutes());
      case "S":
        return p(d.getUTCSeconds());
      case "s":
        return String(Math.floor(unixMs / 1000));
      case "%":
        return "%";
      default:
        throw new BadInputError(`unknown directive %${c} in playback URL template`);
    }
  });
}
