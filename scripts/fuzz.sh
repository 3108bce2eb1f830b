#!/usr/bin/env bash
# Runs every go test -fuzz target of the project for a short time each
# (FUZZTIME, default 3s), after its seed corpus. A failure leaves the
# failing input under the package's testdata/fuzz, as go test does.
#
# Usage: scripts/fuzz.sh            # every target, 3s each
#        FUZZTIME=5m scripts/fuzz.sh FuzzParse   # targets matching a regexp
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

fuzztime="${FUZZTIME:-3s}"
filter="${1:-.}"
status=0
count=0
while IFS=: read -r file name; do
	[[ "$name" =~ $filter ]] || continue
	pkg="./$(dirname "$file")"
	echo "fuzz $pkg $name ($fuzztime)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/detbus-fuzz.$$ 2>&1; then
		cat /tmp/detbus-fuzz.$$
		status=1
	fi
	count=$((count + 1))
done < <(git ls-files '*_test.go' | xargs grep -H -o '^func Fuzz[A-Za-z0-9_]*' | sed 's/:func /:/' | sort)
rm -f /tmp/detbus-fuzz.$$
echo "fuzzed $count targets"
exit $status
