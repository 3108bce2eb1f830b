#!/usr/bin/env bash
# Runs every test of the project: installs the tools the tests use
# (scripts/install-tools.sh), checks formatting and vet, then runs
# go test with the race detector over all packages, then the scale tests
# (TestScale*: logs of millions of events, which skip under the race
# detector) without it, then every fuzz target briefly (scripts/fuzz.sh;
# FUZZTIME, default 3s each).
#
# Usage: scripts/test.sh [extra go test flags]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/install-tools.sh

unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [[ -n "$unformatted" ]]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m "$@" ./...
go test -count=1 -timeout 20m -run '^TestScale' "$@" ./...
FUZZTIME="${FUZZTIME:-3s}" scripts/fuzz.sh
