# Gatehouse in a container. Two stages: `build` compiles the native fast path (sfu/native) and
# installs the runtime dependencies only; `runtime` holds the result, runs as the unprivileged
# `node` user and listens on high ports (map 443 to 8443: `docker run -p 443:8443/tcp …`).
#
#   docker build -t gatehouse .
#   docker run --stop-timeout 20 -v /etc/gatehouse:/etc/gatehouse:ro -v gatehouse-data:/var/lib/gatehouse \
#     -p 443:8443/tcp -p 14049:14049/udp -p 40000-40999:40000-40999/udp gatehouse
#
# The configuration is /etc/gatehouse/gatehouse.yaml (server.host 0.0.0.0, server.port 8443;
# `npm run ports -- --config …` lists every port to publish). Nothing is downloaded at run time.

FROM node:24-bookworm AS build
WORKDIR /app
# The C compiler for the native addon comes with this image (buildpack-deps); Node's own headers
# come with Node. Dependencies first, so a source change does not reinstall them.
COPY package.json package-lock.json ./
COPY sfu/native/ ./sfu/native/
RUN npm ci --omit=dev --no-audit --no-fund
COPY config/ ./config/
COPY gateway/ ./gateway/
COPY sfu/ ./sfu/
COPY turn/ ./turn/
COPY web/ ./web/
COPY deploy/healthcheck.mjs ./deploy/healthcheck.mjs
# Fail the image build, rather than run slower, when the fast path does not compile.
RUN node sfu/native/build.ts --strict

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    GATEHOUSE_CONFIG=/etc/gatehouse/gatehouse.yaml \
    GATEHOUSE_DATA_DIR=/var/lib/gatehouse \
    GATEHOUSE_HEALTH_URL=http://127.0.0.1:8443/healthz
WORKDIR /app
COPY --from=build --chown=root:root /app /app
RUN mkdir -p /var/lib/gatehouse /etc/gatehouse && chown node:node /var/lib/gatehouse
VOLUME ["/var/lib/gatehouse"]
USER node
# HTTPS + TURN over TCP/TLS, TURN over UDP, WebRTC media, SIP, SIP audio (the defaults; see README "Ports").
EXPOSE 8443/tcp 14049/udp 40000-40999/udp 5060/udp 5060/tcp 10000-10999/udp
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["node", "deploy/healthcheck.mjs"]
# SIGTERM starts a graceful stop bounded by server.shutdownTimeoutMs (10 s by default): give
# `docker stop` more than that (--stop-timeout 20).
STOPSIGNAL SIGTERM
CMD ["node", "gateway/main.ts"]
