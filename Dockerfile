# One image for every Damrey binary; each service of docker-compose.yml picks its
# binary with `command`. With a registry: `docker compose up --build` (or
# `docker build -t damrey:local .`) compiles the release binaries in the `build` stage.
# Without one, scripts/offline-images builds them on the host and passes
# `--build-arg BINARIES=host` with a context holding only `bin/` (see docs/containers.md).

# Where the binaries come from: `build` (compiled here) or `host` (copied from the context).
ARG BINARIES=build

# Builder: the release binaries, stripped. The cargo registry and target directory are
# cache mounts, so a rebuild after a source change recompiles only what changed; the
# binaries are copied out of the cache mount to /out.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p damrey-proxy -p damrey-agent -p damrey-example -p damrey-cli \
        --bin damrey-proxy --bin damrey-agent --bin damrey --bin entry --bin add --bin square \
 && mkdir -p /out \
 && cp target/release/damrey-proxy target/release/damrey-agent target/release/damrey \
       target/release/entry target/release/add target/release/square /out/ \
 && strip /out/*

# The same binaries built on the host (scripts/offline-images), from a context of `bin/`.
FROM scratch AS host
COPY bin/ /out/

FROM ${BINARIES} AS binaries

# Runtime: the binaries, curl for healthchecks and config registration, and CA
# certificates; runs as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/damrey --uid 10001 damrey
COPY --from=binaries /out/ /usr/local/bin/
WORKDIR /var/lib/damrey
USER damrey
# proxy, agent, entry's HTTP front door (DESIGN.md §1)
EXPOSE 7700 7701 8080
CMD ["damrey-proxy"]
