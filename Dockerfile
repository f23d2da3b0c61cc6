# syntax=docker/dockerfile:1
# Multi-stage build of tau-portal. Migrations, templates, the stylesheet and the .env template
# are compiled into the binary, so the runtime image holds the binary alone.
#
# The build context is filtered by .dockerignore (an allowlist: only what is copied below).
# tests/api/image.rs builds the binary from exactly what this file copies, offline, since no
# container engine is reachable where the tests run: keep the COPY lines in step with it.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin tau-portal \
 && rm -rf src
# Everything the crate reads at compile time: build.rs, the sources, migrations (sqlx::migrate!),
# templates (askama), static/ (include_str!) and .env.example (provision's template).
COPY build.rs .env.example ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY grafana/dashboards ./grafana/dashboards
# The Admin's licence public key, compiled in when given (README "Licence"; option_env! reads it).
ARG TAU_LICENSE_PUBLIC_KEY=""
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
EXPOSE 8080 9090
# The binary probes its own /health (the image has no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["tau-portal", "healthcheck"]
VOLUME ["/data/keys", "/data/branding"]
ENTRYPOINT ["tau-portal"]
CMD ["serve"]
