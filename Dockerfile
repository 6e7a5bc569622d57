# syntax=docker/dockerfile:1
#
# The nodedns image: one static binary on distroless/static (no shell, no
# libc, no package manager).
#
#   docker build -t REGISTRY/nodedns:TAG .
#
# The binary is built by hack/build.sh, the same script test/deploy uses
# (CGO_ENABLED=0 -trimpath -ldflags "-s -w"), so what the tests check is
# what ships. The builder's Go matches go.mod's go line (test/deploy checks).

FROM golang:1.26.8 AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    sh hack/build.sh /out/nodedns

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/nodedns /nodedns
# Root, with every capability but NET_ADMIN and NET_BIND_SERVICE dropped by
# the DaemonSet: Kubernetes has no ambient capabilities, so a non-root user
# could not hold NET_ADMIN (deploy/daemonset.yaml explains). Standalone use
# on a high port without --setup-interface can run as any user
# (docker run --user 65532 ...).
USER 0:0
ENTRYPOINT ["/nodedns"]
