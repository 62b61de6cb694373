# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with the stripped
# binary. ffmpeg is in the image because browser ingest runs it (api.video's WebM -> H.264 +
# AAC, and the Go live page's Opus -> AAC); `--build-arg FFMPEG=no` gives the lean image
# (about a quarter of the size) for deployments without browser publishers.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Line tables are for local profiling; the image gets a stripped binary.
ENV CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked -p ferrocast

FROM debian:bookworm-slim
ARG FFMPEG=yes
# ca-certificates: the platform roots rtmps:// pushes verify against.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
       $( [ "$FFMPEG" = yes ] && echo ffmpeg ) \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/ferrocast ferrocast \
    && mkdir -p /var/lib/ferrocast && chown ferrocast /var/lib/ferrocast
COPY --from=build /src/target/release/ferrocast /usr/local/bin/ferrocast
COPY config.example.yaml /etc/ferrocast/config.example.yaml
USER ferrocast
ENV FERROCAST_DATA_DIR=/var/lib/ferrocast
VOLUME /var/lib/ferrocast
# Every default listener: RTMP, HTTP (API, dashboard, HLS, DASH, MPEG-TS, browser ingest,
# metrics, health), RTSP, SRT. RTMPS only when rtmps.listen is set.
# The API answers only loopback by default, which inside a container is the container itself:
# set FERROCAST_API__TOKEN (and/or FERROCAST_API__ALLOW) to manage it from outside.
EXPOSE 1935 8080 8554 9000/udp
# No curl in the slim image: bash's /dev/tcp asks /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '200' <&3"]
ENTRYPOINT ["/usr/local/bin/ferrocast"]
