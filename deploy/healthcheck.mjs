// Container health check: GET $GATEHOUSE_HEALTH_URL (default http://127.0.0.1:8443/healthz);
// exit 0 on 200, 1 otherwise. Plain JavaScript so any Node runs it; a gateway on HTTPS with its
// own certificate is asked over loopback without checking the certificate (nothing is sent).
import http from "node:http";
import https from "node:https";
import process from "node:process";
import { URL } from "node:url";

const url = new URL(process.env.GATEHOUSE_HEALTH_URL || "http://127.0.0.1:8443/healthz");
const get = url.protocol === "https:" ? https.get : http.get;
const req = get(url, { timeout: 4000, rejectUnauthorized: false }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on("timeout", () => req.destroy(new Error("timeout")));
req.on("error", (err) => {
  process.stderr.write(`health check ${url.href}: ${err.message}\n`);
  process.exit(1);
});
