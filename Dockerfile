# syntax=docker/dockerfile:1
# Multi-stage build of tau-portal. Migrations are embedded in the binary at build time.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin tau-portal \
 && rm -rf src
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin tau-portal

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /data --shell /usr/sbin/nologin app \
 && mkdir -p /data/keys /data/branding \
 && chown -R app:app /data
COPY --from=build /src/target/release/tau-portal /usr/local/bin/tau-portal
USER app
ENV Application__DataDirectory=/data \
    Application__ListenAddress=0.0.0.0:8080
EXPOSE 8080
# The binary probes its own /health (the image has no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["tau-portal", "healthcheck"]
VOLUME ["/data/keys", "/data/branding"]
ENTRYPOINT ["tau-portal"]
CMD ["serve"]
