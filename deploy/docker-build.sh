#!/usr/bin/env bash
# Builds the feedgate image with `docker build`, independent of any CI:
#   deploy/docker-build.sh [IMAGE]        (default feedgate:<version>)
# The version (git describe, or VERSION from the environment) is baked into the
# binary (`gateway version`, the feedgate_build_info metric). DOCKER selects the
# client (docker, podman, ...); extra arguments for it go in DOCKER_BUILD_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
IMAGE=${1:-feedgate:${VERSION}}

if ! command -v "$DOCKER" >/dev/null 2>&1; then
  echo "docker-build: '$DOCKER' is not installed; install Docker (or set DOCKER=podman)" >&2
  exit 2
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
  echo "docker-build: '$DOCKER' cannot reach a daemon (is it running, and may this user use it?)" >&2
  exit 2
fi

# shellcheck disable=SC2086 # DOCKER_BUILD_ARGS is a list of words on purpose
"$DOCKER" build --build-arg "VERSION=${VERSION}" -t "$IMAGE" ${DOCKER_BUILD_ARGS:-} .
echo "built $IMAGE (version $VERSION)"
echo "try it: $DOCKER run --rm -p 8080:8080 $IMAGE"
