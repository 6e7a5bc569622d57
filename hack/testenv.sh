#!/usr/bin/env bash
# Builds and caches the real kube-apiserver and etcd used by the e2e tests
# (see shared/TESTENV.md). Binaries are keyed by version so a bump rebuilds.
#
#   hack/testenv.sh build   build what is missing, print the binary paths
#   hack/testenv.sh paths   print KUBE_APISERVER_BIN=... and ETCD_BIN=...
set -euo pipefail

KUBE_VERSION=v1.34.4
STAGING_VERSION=v0.34.4 # staging modules are published as v0.<minor>.<patch>
ETCD_VERSION=v3.6.16

CACHE=${NODEDNS_CACHE:-$HOME/.cache/nodedns}
BIN_DIR=$CACHE/bin
BUILD_DIR=$CACHE/build
APISERVER_BIN=$BIN_DIR/kube-apiserver-$KUBE_VERSION
ETCD_BIN=$BIN_DIR/etcd-$ETCD_VERSION

# The wrapper modules must not pick up a workspace or the caller's module.
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local

log() { echo "testenv: $*" >&2; }

# works BIN: true when BIN exists and answers --version (a truncated or
# foreign binary fails here and is rebuilt).
works() { [[ -x $1 ]] && "$1" --version </dev/null >/dev/null 2>&1; }

build_apiserver() {
	if works "$APISERVER_BIN"; then
		log "kube-apiserver $KUBE_VERSION cached"
		return
	fi
	local start=$SECONDS dir=$BUILD_DIR/kube-apiserver-$KUBE_VERSION
	rm -rf "$dir" && mkdir -p "$dir"
	cd "$dir"

	# Take the replace list from kubernetes' own go.mod, not a hand-typed copy.
	local gomod
	gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p')
	[[ -f $gomod ]] || { log "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }

	local staging
	staging=$(awk '
		/^replace[[:space:]]*\(/ { inblock = 1; next }
		inblock && /^\)/ { inblock = 0 }
		inblock && $2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }
	' "$gomod" | grep -v -e '^k8s.io/sample-cli-plugin$' -e '^k8s.io/sample-controller$')
	[[ -n $staging ]] || { log "empty replace block in $gomod"; exit 1; }
	log "replacing $(wc -l <<<"$staging") staging modules with $STAGING_VERSION"

	{
		echo "module nodedns.local/build/kube-apiserver"
		echo
		# Same go/godebug lines as upstream so runtime defaults match its builds.
		grep -E '^(go|godebug) ' "$gomod"
		echo
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		echo
		echo "replace ("
		while read -r m; do echo "	$m => $m $STAGING_VERSION"; done <<<"$staging"
		echo ")"
	} >go.mod
	cat >tools.go <<'GO'
//go:build tools

// Only makes go mod tidy record kube-apiserver's dependencies.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
	go mod tidy

	local minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	local ld="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	mkdir -p "$BIN_DIR"
	local tmp=$APISERVER_BIN.tmp.$$
	trap 'rm -f "$tmp"' EXIT
	go build -trimpath -ldflags "$ld" -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver
	"$tmp" --version
	mv -f "$tmp" "$APISERVER_BIN"
	trap - EXIT
	log "kube-apiserver built in $((SECONDS - start))s"
}

build_etcd() {
	if works "$ETCD_BIN"; then
		log "etcd $ETCD_VERSION cached"
		return
	fi
	local start=$SECONDS dir=$BUILD_DIR/etcd-$ETCD_VERSION
	rm -rf "$dir" && mkdir -p "$dir"
	cd "$dir"
	cat >go.mod <<MOD
module nodedns.local/build/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
	cat >main.go <<'GO'
// A main for etcd's server so it builds from the module proxy alone.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
	go mod tidy
	mkdir -p "$BIN_DIR"
	local tmp=$ETCD_BIN.tmp.$$
	trap 'rm -f "$tmp"' EXIT
	go build -trimpath -ldflags "-s -w" -o "$tmp" .
	"$tmp" --version
	mv -f "$tmp" "$ETCD_BIN"
	trap - EXIT
	log "etcd built in $((SECONDS - start))s"
}

paths() {
	echo "KUBE_APISERVER_BIN=$APISERVER_BIN"
	echo "ETCD_BIN=$ETCD_BIN"
}

case ${1:-} in
build)
	mkdir -p "$CACHE"
	# One build at a time per cache, so parallel callers wait, then find it cached.
	exec 9>"$CACHE/.build.lock"
	flock 9
	# Leftovers of a killed build (we hold the lock, so none is in progress).
	rm -f "$BIN_DIR"/*.tmp.*
	(build_etcd)
	(build_apiserver)
	paths
	;;
paths) paths ;;
*)
	echo "usage: $0 build|paths" >&2
	exit 2
	;;
esac
