# infer-eval in a container (docker or podman), built with --locked from a
# Rust toolchain image pinned by digest.
#
# Build (the commit and dirty flag go into the binary's build info, as a
# build from a git checkout records them itself):
#   docker build -t infer-eval \
#     --build-arg GIT_SHA="$(git rev-parse HEAD)" \
#     --build-arg GIT_DIRTY="$(test -z "$(git status --porcelain --untracked-files=no)" && echo false || echo true)" .
#   (podman build takes the same arguments; DOCKER_BUILDKIT=0 works too.)
#
# Run, with the model cache as a volume and the image's identity passed in:
#   ID=$(docker image inspect --format '{{.Id}}' infer-eval)
#   docker run --rm -v infer-eval-cache:/cache \
#     -e INFER_EVAL_IMAGE="registry.example/infer-eval@sha256:<digest>" \
#     -e INFER_EVAL_IMAGE_ID="$ID" \
#     infer-eval eval experiment=smoke --outputs /cache/outputs
#
# INFER_EVAL_IMAGE (a reference; `repo@sha256:...` is recorded as pinned, a
# tag alone as unpinned) and INFER_EVAL_IMAGE_ID (the image ID, the config
# digest) land in every run's manifest (environment.image); `infer-eval
# diff` shows a change of image. A container cannot see its own digest, so
# the launcher passes it: `docker inspect --format '{{index .RepoDigests 0}}'`
# after a push or pull. Empty by default: an image run without them records
# no image.
#
# The digests below are the multi-arch indexes of rust:1.95.0-slim-bookworm
# and debian:bookworm-slim; refresh both with
# `docker buildx imagetools inspect <name:tag>` when moving the toolchain.
#
# Without a registry (no pull possible), scripts/container-local.sh makes a
# Debian bookworm base with mmdebstrap, passes it as RUNTIME_IMAGE, and
# passes BINARY=prebuilt with a binary built by the same pinned toolchain on
# the host (docs/CONTAINERS.md says why); the toolchain stage is then unused.
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim@sha256:7b140f374b289a7c2befc338f42ebe6441b7ea838a042bbd5acbfca6ec875818
# Where the binary comes from: the stage "build" (compiled here) or
# "prebuilt" (the context's prebuilt/ folder).
ARG BINARY=build

FROM ${RUST_IMAGE} AS build
ARG GIT_SHA=unknown
ARG GIT_DIRTY=unknown
WORKDIR /src
COPY . .
# build.rs reads these where there is no .git (see .dockerignore);
# --remap-path-prefix keeps the build folder out of the binary.
ENV INFER_EVAL_BUILD_GIT_SHA=${GIT_SHA} \
    INFER_EVAL_BUILD_GIT_DIRTY=${GIT_DIRTY} \
    RUSTFLAGS="--remap-path-prefix=/src=/infer-eval"
RUN cargo build --release --locked --bin infer-eval \
 && sha256sum Cargo.lock | cut -d' ' -f1 > /cargo-lock.sha256

# A binary built outside (scripts/container-local.sh), at the same paths.
FROM scratch AS prebuilt
COPY prebuilt/infer-eval /src/target/release/infer-eval
COPY prebuilt/cargo-lock.sha256 /cargo-lock.sha256

FROM ${BINARY} AS binary

FROM ${RUNTIME_IMAGE}
ARG GIT_SHA=unknown
# ca-certificates: `infer-eval fetch` downloads model files over HTTPS (a
# base that has them, as the local one does, needs no package index).
RUN test -s /etc/ssl/certs/ca-certificates.crt || { apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*; }
COPY --from=binary /src/target/release/infer-eval /usr/local/bin/infer-eval
COPY --from=binary /cargo-lock.sha256 /opt/infer-eval/cargo-lock.sha256
# The project folder eval reads: configs, data and prompt templates.
COPY configs /opt/infer-eval/configs
COPY data /opt/infer-eval/data
COPY prompts /opt/infer-eval/prompts
WORKDIR /opt/infer-eval
LABEL org.opencontainers.image.title="infer-eval" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.source="infer-eval"
# The model cache (and, with --outputs /cache/outputs, run folders) lives in a volume.
ENV INFER_EVAL_CACHE=/cache \
    INFER_EVAL_IMAGE="" \
    INFER_EVAL_IMAGE_ID=""
VOLUME /cache
ENTRYPOINT ["infer-eval"]
CMD ["--model", "llama", "--seed", "42"]
