# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with only the binary.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferrocast

FROM debian:bookworm-slim
# ca-certificates: the platform roots rtmps:// pushes verify against.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/ferrocast ferrocast \
    && mkdir -p /var/lib/ferrocast && chown ferrocast /var/lib/ferrocast
COPY --from=build /src/target/release/ferrocast /usr/local/bin/ferrocast
COPY config.example.yaml /etc/ferrocast/config.example.yaml
USER ferrocast
ENV FERROCAST_DATA_DIR=/var/lib/ferrocast
VOLUME /var/lib/ferrocast
# RTMP, HTTP (API, HLS, DASH, MPEG-TS, metrics, health); RTMPS when rtmps.listen is set.
# The API answers only loopback by default, which inside a container is the container itself:
# set FERROCAST_API__TOKEN (and/or FERROCAST_API__ALLOW) to manage it from outside.
EXPOSE 1935 8080
ENTRYPOINT ["/usr/local/bin/ferrocast"]
