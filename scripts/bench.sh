#!/usr/bin/env bash
# Runs the benchmarks that pair detbus with the raw JetStream operation it
# is built on, and prints each pair's median throughput and their ratio
# (detbus / raw). Both sides of a pair run on the same embedded server in
# the same process, one right after the other; the test binary is built
# once and run COUNT times, so the two sides alternate and drift of the
# machine hits both. The ratio holds up on a noisy machine where absolute
# numbers do not.
#
# Usage: scripts/bench.sh [package]   (default ./transport/)
# Env:   COUNT (default 5), BENCHTIME (default 2s), BENCH (regexp, default .)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pkg="${1:-./transport/}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
out="$tmp/out"
go test -c -o "$tmp/bench.test" "$pkg"
(cd "$pkg" && for _ in $(seq "${COUNT:-5}"); do
	"$tmp/bench.test" -test.run '^$' -test.bench "${BENCH:-.}" -test.benchtime "${BENCHTIME:-2s}" | grep '^Benchmark'
done) | tee "$out"
echo
awk '
/^Benchmark/ && /\/(raw|detbus)=/ {
	split($1, parts, "/"); group = parts[1]
	side = (parts[2] ~ /^raw=/) ? "raw" : "detbus"
	sub(/-[0-9]+$/, "", parts[2]); name[group, side] = parts[2]
	for (i = 2; i <= NF; i++) if ($(i+1) == "ns/op") { n = ++cnt[group, side]; v[group, side, n] = $i }
	if (!(group in seen)) { seen[group] = 1; order[++groups] = group }
}
function median(g, s,   n, i, j, t, a) {
	n = cnt[g, s]; for (i = 1; i <= n; i++) a[i] = v[g, s, i]
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
	printf "%-36s %-40s %12s %-28s %12s %8s\n", "benchmark", "raw", "events/s", "detbus", "events/s", "ratio"
	for (k = 1; k <= groups; k++) {
		g = order[k]
		if (!cnt[g, "raw"] || !cnt[g, "detbus"]) continue
		r = median(g, "raw"); d = median(g, "detbus")
		printf "%-36s %-40s %12.0f %-28s %12.0f %7.2fx\n", g, name[g, "raw"], 1e9 / r, name[g, "detbus"], 1e9 / d, r / d
	}
}' "$out"
