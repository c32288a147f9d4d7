#!/usr/bin/env bash
# Builds the image udht-node:local for docker-compose.yml: a statically linked udht-node built on
# the host, in a FROM scratch image (no registry needed). Idempotent: cargo and docker only redo
# what changed.
#
# Environment: IMAGE (default udht-node:local), CARGO (default cargo), STRIP=0 to keep the debug
# line tables in the image (75 MB instead of 15 MB; symbols stay either way).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${IMAGE:-udht-node:local}"
TARGET=x86_64-unknown-linux-gnu
BINARY="$ROOT/target/$TARGET/release/udht-node"

log() { echo "build.sh: $*" >&2; }

# A static glibc binary: runs in an empty image. --target keeps these flags off build scripts and
# proc macros, and the output apart from the ordinary target/release.
build_binary() {
  log "cargo build (static, $TARGET)"
  (cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' "${CARGO:-cargo}" build --release \
    --target "$TARGET" --bin udht-node)
}

# Fails unless the binary has no dynamic loader (it would not start in a scratch image).
check_static() {
  if command -v file >/dev/null; then
    local kind
    kind="$(file -L "$BINARY")"
    case "$kind" in
      *"dynamically linked"*) log "not static: $kind"; exit 1 ;;
    esac
  fi
  if ldd "$BINARY" >/dev/null 2>&1 && ! ldd "$BINARY" 2>&1 | grep -q "statically linked"; then
    log "not static: $(ldd "$BINARY" 2>&1 | head -3)"
    exit 1
  fi
}

# The build context holds only the Dockerfile and the binary (not the repo, not target/).
CONTEXT=""
trap 'rm -rf "$CONTEXT"' EXIT
build_image() {
  CONTEXT="$(mktemp -d)"
  cp "$ROOT/simulations/docker/Dockerfile" "$CONTEXT/Dockerfile"
  if [ "${STRIP:-1}" = 1 ] && command -v strip >/dev/null; then
    strip --strip-debug -o "$CONTEXT/udht-node" "$BINARY"
  else
    cp "$BINARY" "$CONTEXT/udht-node"
  fi
  local old
  old="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
  log "docker build -t $IMAGE"
  docker build --quiet -t "$IMAGE" "$CONTEXT" >/dev/null
  # The previous build, now untagged: removed unless a container still uses it.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
}

build_binary
check_static
build_image
log "image $IMAGE ready ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
