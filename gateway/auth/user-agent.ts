/**
 * A short, human description of a browser from its User-Agent header, for the sessions page
 * ("Chrome 156 on Linux", "Safari on iPhone"). Best effort and never trusted for anything else:
 * the header is whatever the client chose to send.
 */

/** Browser tokens in the order that disambiguates them (Edge and Opera also say "Chrome"; Chrome also says "Safari"). */
const BROWSERS: ReadonlyArray<[RegExp, string]> = [
  [/\bEdg(?:e|A|iOS)?\/(\d+)/, "Edge"],
  [/\bOPR\/(\d+)/, "Opera"],
  [/\bSamsungBrowser\/(\d+)/, "Samsung Internet"],
  [/\bFirefox\/(\d+)/, "Firefox"],
  [/\bFxiOS\/(\d+)/, "Firefox"],
  [/\bCriOS\/(\d+)/, "Chrome"],
  [/\bHeadlessChrome\/(\d+)/, "Headless Chrome"],
  [/\bChrom(?:e|ium)\/(\d+)/, "Chrome"],
  [/\bVersion\/(\d+)[.\d]* (?:Mobile\/\S+ )?Safari\//, "Safari"],
];

const SYSTEMS: ReadonlyArray<[RegExp, string]> = [
  [/\biPhone\b/, "iPhone"],
  [/\biPad\b/, "iPad"],
  [/\bAndroid\b/, "Android"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\bWindows\b/, "Windows"],
  [/\bMac OS X\b|\bMacintosh\b/, "macOS"],
  [/\bLinux\b/, "Linux"],
];

/** "Chrome 156 on Linux"; "Unknown browser" for an empty header; a short tool name (curl/8.5.0) as it is. */
export function describeUserAgent(ua: string | undefined): string {
  const s = (ua ?? "").trim();
  if (!s) return "Unknown browser";
  let browser: string | undefined;
  for (const [re, name] of BROWSERS) {
    const m = re.exec(s);
    if (m) {
      browser = `${name} ${m[1]}`;
      break;
    }
  }
  const system = SYSTEMS.find(([re]) => re.test(s))?.[1];
  if (browser && system) return `${browser} on ${system}`;
  if (browser) return browser;
  // Not a browser: a tool's product token (curl/8.5.0, python-requests/2.31) says enough.
  const token = /^[\w.-]{1,40}\/[\w.-]{1,20}/.exec(s)?.[0];
  return token ?? (system ? `Browser on ${system}` : "Unknown browser");
}
