#!/usr/bin/env bash
# Builds the infer-eval image where no registry can be reached: a Debian
# bookworm base made here by mmdebstrap from Debian's packages, and the
# binary built on this machine by the toolchain the Dockerfile pins
# (docs/CONTAINERS.md says why), through the project's own Dockerfile with
# RUNTIME_IMAGE=<local base> and BINARY=prebuilt.
#
#   scripts/container-local.sh [--tag NAME] [--binary PATH] [--rebuild-base] [--no-cache]
#
# --tag NAME       the image to build (default localhost/infer-eval:local)
# --binary PATH    an infer-eval binary to put in the image (default: cargo
#                  build --release --locked, then target/release/infer-eval)
# --rebuild-base   make the Debian base again (default: reuse the one built)
# --no-cache       build every layer again (a check that the ID repeats)
#
# Environment: BUILDER (podman or docker; default podman where installed),
# INFER_EVAL_CONTAINER_CACHE (where the base tarball is kept; default
# ~/.cache/infer-eval/container), SOURCE_DATE_EPOCH (default 0: the base's
# files and both images' timestamps, so a rebuild gives the same image ID).
#
# Needs: mmdebstrap, and podman with runc (or docker with a daemon). The
# last line printed is "image <tag> <image id>".
set -euo pipefail
cd "$(dirname "$0")/.."

tag=localhost/infer-eval:local
binary=""
rebuild_base=false
no_cache=()
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag="${2:?--tag needs a name}"; shift 2 ;;
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --rebuild-base) rebuild_base=true; shift ;;
        --no-cache) no_cache=(--no-cache); shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "container-local.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

builder="${BUILDER:-$(command -v podman >/dev/null && echo podman || echo docker)}"
command -v "$builder" >/dev/null || { echo "container-local.sh: $builder is not installed (apt-get install podman runc)" >&2; exit 5; }
command -v mmdebstrap >/dev/null || { echo "container-local.sh: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 5; }
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}"
cache="${INFER_EVAL_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/infer-eval/container}"
mkdir -p "$cache"

# podman's runc needs explicit limits where the host's are above what a
# container may set (../shared/INTEROP-NOTES.md §3); --timestamp fixes the
# image's dates. docker's classic builder has neither flag.
flags=()
if [ "$(basename "$builder")" = podman ]; then
    flags=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
    build_flags=("${flags[@]}" --timestamp "$SOURCE_DATE_EPOCH")
else
    build_flags=()
    export DOCKER_BUILDKIT=0
fi

# 1. The base: Debian bookworm (minbase, ca-certificates) as a tarball with
#    SOURCE_DATE_EPOCH's dates, then an image FROM scratch holding it.
base_tar="$cache/bookworm-minbase.tar"
base_tag=localhost/infer-eval-base:bookworm
if $rebuild_base || [ ! -s "$base_tar" ]; then
    echo "== mmdebstrap: Debian bookworm base -> $base_tar" >&2
    mmdebstrap --quiet --variant=minbase --include=ca-certificates \
        --mode="$( [ "$(id -u)" = 0 ] && echo root || echo unshare )" \
        bookworm "$base_tar.part"
    mv "$base_tar.part" "$base_tar"
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
ln "$base_tar" "$ctx/base.tar" 2>/dev/null || cp "$base_tar" "$ctx/base.tar"
printf 'FROM scratch\nADD base.tar /\nCMD ["bash"]\n' > "$ctx/Containerfile"
echo "== $builder: base image $base_tag" >&2
"$builder" build "${build_flags[@]}" "${no_cache[@]}" -q -t "$base_tag" -f "$ctx/Containerfile" "$ctx" >/dev/null
rm -rf "${ctx:?}"/*

# 2. The binary, built by this machine's toolchain from Cargo.lock.
if [ -z "$binary" ]; then
    echo "== cargo build --release --locked --bin infer-eval" >&2
    cargo build --release --locked --bin infer-eval >&2
    binary=target/release/infer-eval
fi
[ -x "$binary" ] || { echo "container-local.sh: $binary is not an executable" >&2; exit 3; }

# 3. The project's Dockerfile, with a context of what the image holds.
mkdir -p "$ctx/prebuilt"
cp Dockerfile "$ctx/"
cp -r configs data prompts "$ctx/"
cp "$binary" "$ctx/prebuilt/infer-eval"
sha256sum Cargo.lock | cut -d' ' -f1 > "$ctx/prebuilt/cargo-lock.sha256"
git_sha="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
echo "== $builder: $tag (commit $git_sha)" >&2
"$builder" build "${build_flags[@]}" "${no_cache[@]}" -q -t "$tag" \
    --build-arg BINARY=prebuilt \
    --build-arg RUNTIME_IMAGE="$base_tag" \
    --build-arg GIT_SHA="$git_sha" \
    "$ctx" >/dev/null
id="$("$builder" image inspect --format '{{.Id}}' "$tag")"
echo "image $tag sha256:${id#sha256:}"
