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
# -p 1 for the e2e packages would serialise; the race detector covers the
# concurrent parts (zone publish, server loops).
go test -race -count=1 -timeout 30m ./... 2>&1 | tee /tmp/nodedns-test.log
