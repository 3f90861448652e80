/**
 * A `fetch` for talking to the identity provider that can trust a private CA (the organisation's
 * own, or a test CA) in addition to the system roots — Node's global fetch cannot take a CA per call.
 * Bodies are capped so a hostile or broken endpoint cannot exhaust memory; redirects are not followed
 * (openid-client asks for `redirect: "manual"` anyway).
 */
import http from "node:http";
import https from "node:https";
import { rootCertificates } from "node:tls";
import { UpstreamError } from "../../config/errors.ts";

export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

export interface ProviderFetchOptions {
  /** Extra trusted CA certificates (PEM). The system roots stay trusted. */
  ca?: string | undefined;
  /** Whole-request timeout, milliseconds. Default 10000. */
  timeoutMs?: number;
  /** Largest response body accepted, bytes. Default 1 MiB. */
  maxBodyBytes?: number;
}

/** A provider fetch; `close()` drops its kept-alive connections. */
export type ProviderFetch = FetchLike & { close(): void };

export function providerFetch(opts: ProviderFetchOptions = {}): ProviderFetch {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxBody = opts.maxBodyBytes ?? 1 << 20;
  const ca = opts.ca ? [...rootCertificates, opts.ca] : undefined;
  const agent = new https.Agent({ keepAlive: true, ...(ca ? { ca } : {}) });
  const plainAgent = new http.Agent({ keepAlive: true });

  const f: FetchLike = async (input, init = {}) => {
    const url = new URL(input);
    const isHttps = url.protocol === "https:";
    if (!isHttps && url.protocol !== "http:") throw new UpstreamError(`unsupported scheme ${url.protocol}`);
    const headers = new Headers(init.headers);
    let body: Buffer | undefined;
    if (init.body != null) {
      if (typeof init.body === "string") body = Buffer.from(init.body);
      else if (init.body instanceof URLSearchParams) {
        body = Buffer.from(init.body.toString());
        if (!headers.has("content-type")) headers.set("content-type", "application/x-www-form-urlencoded;charset=UTF-8");
      } else if (init.body instanceof Uint8Array) body = Buffer.from(init.body);
      else if (init.body instanceof ArrayBuffer) body = Buffer.from(new Uint8Array(init.body));
      else throw new UpstreamError("unsupported request body type");
    }
    if (body) headers.set("content-length", String(body.length));
    const outHeaders: Record<string, string> = {};
    headers.forEach((v, k) => (outHeaders[k] = v));

    return new Promise<Response>((resolve, reject) => {
      const req = (isHttps ? https : http).request(url, {
        method: init.method ?? "GET",
        headers: outHeaders,
        agent: isHttps ? agent : plainAgent,
        timeout: timeoutMs,
      });
      const fail = (err: unknown) => {
        req.destroy();
        reject(err instanceof Error ? err : new UpstreamError(String(err)));
      };
      const signal = init.signal;
      if (signal) {
        if (signal.aborted) return fail(signal.reason);
        signal.addEventListener("abort", () => fail(signal.reason), { once: true });
      }
      req.on("timeout", () => fail(new UpstreamError(`identity provider did not answer within ${timeoutMs} ms`)));
      req.on("error", (err) => reject(err));
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > maxBody) fail(new UpstreamError("identity provider response too large"));
          else chunks.push(c);
        });
        res.on("error", (err) => reject(err));
        res.on("end", () => {
          const status = res.statusCode ?? 502;
          const h = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) h.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
          const nullBody = status === 204 || status === 304 || init.method === "HEAD";
          try {
            resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: h }));
          } catch (err) {
            reject(new UpstreamError(`unusable response status ${status}`, { cause: err }));
          }
        });
      });
      req.end(body);
    });
  };
  return Object.assign(f, {
    close: () => {
      agent.destroy();
      plainAgent.destroy();
    },
  });
}
