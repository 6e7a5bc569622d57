#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what the tests need (idempotent, cached), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash hack/deps.sh
bash hack/testenv.sh build

echo "== go vet"
go vet ./...
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi

echo "== go test"
# The race detector covers the concurrent parts (zone publish, server loops).
go test -race -count=1 -timeout 30m ./...

echo "== fuzz"
# Every fuzz target for FUZZTIME (default 10s) each; crashers stay as seeds
# in testdata/fuzz, which the go test above replays on every run.
bash hack/fuzz.sh
