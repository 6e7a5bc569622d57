#!/bin/sh
# Builds the nodedns binary the one way it is shipped: static (no cgo, so it
# runs on distroless/static or scratch), without local paths (-trimpath) and
# without symbol tables (-s -w). The Dockerfile runs this script, and
# test/deploy builds with it too, so the image and the tests cannot drift.
#
#   hack/build.sh [OUTPUT]    default: nodedns in the repository root
#
# POSIX sh, so it runs in any builder image.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/nodedns}
case $out in
/*) ;;
*) out=$(pwd)/$out ;; # relative to the caller, not to the repository
esac
cd "$root"
# -buildvcs=false: the image's build context has no .git (see
# .dockerignore), so a local build stamps no VCS data either.
CGO_ENABLED=0 exec go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$out" ./cmd/nodedns
