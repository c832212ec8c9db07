# syntax=docker/dockerfile:1
#
# identity: multi-stage build of the `identity` binary into a minimal non-root image.
#
#   docker build -t identity:dev .
#   docker run --rm -p 50051:50051 identity:dev              # dev mode: embedded SQLite in /var/lib/identity
#   docker run --rm identity:dev migrate                      # any subcommand: serve | migrate | keygen | hash-token
#
# Build args (all optional) feed the OCI labels: VERSION, REVISION (git sha), CREATED (RFC 3339), SOURCE.
# BUILDER_IMAGE and RUNTIME_IMAGE name the base images; pin them by digest for reproducible builds,
# e.g. --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:<digest> (the digest
# from `docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot`).

ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

###############################################################################
# Stage 1: builder
###############################################################################
FROM ${BUILDER_IMAGE} AS builder

# bash with pipefail: a pipeline in a RUN fails when any command in it fails, not only the last.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

WORKDIR /build

# The SAML signature checks (samael's `xmlsec` feature) bind Debian's libxmlsec1 through bindgen:
# building needs libclang and the headers of libxmlsec1 (OpenSSL back end), libxml2 and OpenSSL,
# found through pkg-config. The versions are those of the base image's Debian release; pinning them
# would break the build whenever a Debian security update replaces one.
# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libclang-dev libxmlsec1-dev libxml2-dev libssl-dev pkg-config; \
    rm -rf /var/lib/apt/lists/*

# Dependency caching, without extra tools:
#  1. copy only the manifests (Cargo.toml, Cargo.lock, migrations/Cargo.toml, and the client crate's,
#     a workspace member the server's build never compiles);
#  2. put a stub `fn main() {}` at every target path they name (src/lib.rs, src/main.rs, build.rs,
#     migrations/src/lib.rs, and any explicit [[test]]/[[bench]]/[[bin]] `path = "..."`, so cargo can load
#     the workspace even though tests/ is not in the build context);
#  3. build: every third-party crate is compiled into this layer, which Docker reuses until a manifest
#     or the lock file changes. Editing src/ or proto/ only re-runs the last, short step;
#  4. forget the fingerprints of our own two crates (identity, migration) so the real build recompiles
#     them. (cargo-chef does the same job; this avoids installing another tool into the builder.)
COPY Cargo.toml Cargo.lock ./
COPY migrations/Cargo.toml migrations/Cargo.toml
COPY clients/identity-client/Cargo.toml clients/identity-client/Cargo.toml
RUN set -eux; \
    stub() { mkdir -p "$(dirname "$1")"; [ -e "$1" ] || echo 'fn main() {}' > "$1"; }; \
    for f in build.rs src/lib.rs src/main.rs migrations/src/lib.rs \
             clients/identity-client/build.rs clients/identity-client/src/lib.rs; do stub "$f"; done; \
    for p in $(sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*$/\1/p' Cargo.toml); do stub "$p"; done; \
    for p in $(sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*$/\1/p' migrations/Cargo.toml); do stub "migrations/$p"; done; \
    cargo build --release --locked --bin identity; \
    rm -rf target/release/.fingerprint/identity-* target/release/.fingerprint/migration-* \
           target/release/build/identity-* target/release/identity

# The real sources. build.rs compiles proto/ with protox (pure Rust; no protoc in the image).
COPY build.rs ./
COPY proto ./proto
COPY src ./src
COPY migrations ./migrations

# COPY keeps the files' original mtimes, which may be older than the stub build above; touch them so
# cargo's mtime-based freshness check can never keep a stub. Then the real build, a smoke test that the
# result is the real CLI (its help lists the subcommands; grep reads all of it, as `grep -q` could exit
# early and fail the pipeline with SIGPIPE), and the files for the runtime stage: the binary and an
# empty data directory for dev mode (`docker run image` without a database URL).
RUN set -eux; \
    find build.rs proto src migrations -type f -exec touch {} +; \
    cargo build --release --locked --bin identity; \
    target/release/identity --help | grep migrate >/dev/null; \
    install -D -m 0755 target/release/identity /out/usr/local/bin/identity; \
    install -d -m 0750 /out/var/lib/identity

# The shared libraries the binary needs beyond distroless/cc's glibc, libgcc, libstdc++ and libssl3:
# the Debian packages libxmlsec1, libxmlsec1-openssl, libxml2 and libxslt1.1, and the libicu72,
# liblzma5 and zlib1g that libxml2 loads. distroless has no package manager, so their libraries come
# from this builder (same Debian 12 release, installed above with the -dev packages) into the runtime
# image's library directory, and their dpkg records into /var/lib/dpkg/status.d, where distroless keeps
# its own so image scanners see every package. Then every library the binary links must be one of
# these or one of distroless/cc's, or the build fails naming it.
RUN set -eux; \
    libdir="/out/usr/lib/$(gcc -print-multiarch)"; \
    install -d "$libdir" /out/var/lib/dpkg/status.d; \
    for package in libxmlsec1 libxmlsec1-openssl libxml2 libxslt1.1 libicu72 liblzma5 zlib1g; do \
      dpkg-query -L "$package" | grep -E '\.so(\.[0-9]+)+$' | xargs -r cp -a -t "$libdir"; \
      dpkg-query -s "$package" > "/out/var/lib/dpkg/status.d/$package"; \
    done; \
    ldd target/release/identity | awk '$2 == "=>" { print $1 }' | while read -r soname; do \
      [ -e "$libdir/$soname" ] \
        || dpkg-query -S "*/$soname" | grep -E '^(libc6|libgcc-s1|libstdc\+\+6|libssl3)(:[a-z0-9]+)?: ' >/dev/null \
        || { echo "the binary needs $soname, which the runtime image would lack" >&2; exit 1; }; \
    done

###############################################################################
# Stage 2: runtime
###############################################################################
# distroless/cc: glibc + libgcc + libstdc++ + libssl3 + ca-certificates + tzdata, no shell, no package
# manager; the SAML libraries are copied in from the builder. Same Debian 12 (bookworm) glibc as the
# builder, so the dynamically linked binary runs as is.
FROM ${RUNTIME_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""

LABEL org.opencontainers.image.title="identity" \
      org.opencontainers.image.description="gRPC identity and access service: accounts, users, groups, sessions, MFA, SSO, sharing and access checks" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder --chown=0:0 /out/usr/local/bin/identity /usr/local/bin/identity
COPY --from=builder --chown=10001:10001 /out/var/lib/identity /var/lib/identity
# libxmlsec1, libxmlsec1-openssl, libxml2, libxslt1.1 and what they load (see the builder stage).
COPY --from=builder --chown=0:0 /out/usr/lib /usr/lib
COPY --from=builder --chown=0:0 /out/var/lib/dpkg/status.d /var/lib/dpkg/status.d

# Listen on all interfaces inside the container (the binary's own default is loopback only), log JSON,
# and keep the dev-mode SQLite database in a directory the runtime user owns. Production sets
# IDENTITY_DATABASE_URL(_FILE) and never touches IDENTITY_DATA_DIR.
ENV IDENTITY_LISTEN_ADDR=0.0.0.0:50051 \
    IDENTITY_LOG_FORMAT=json \
    IDENTITY_DATA_DIR=/var/lib/identity

# Numeric uid:gid (the Helm chart runs as 10001 too) so Kubernetes can verify runAsNonRoot.
USER 10001:10001
WORKDIR /var/lib/identity

# gRPC (h2c): the service API, grpc.health.v1.Health and server reflection.
EXPOSE 50051

ENTRYPOINT ["/usr/local/bin/identity"]
CMD ["serve"]
