// Package allocbound asserts that a decoder of untrusted input allocates
// no more than a bound: fuzz targets call [Check] so that an input that
// makes a decoder allocate far beyond its own size (a length prefix
// claiming gigabytes, say) fails the fuzz run.
package allocbound

import (
	"runtime"
	"testing"
)

// Check runs f once and fails t if it allocated more than limit bytes, as
// counted by the runtime's total allocation (other goroutines' allocations
// during f count too, so limits should leave room for them).
func Check(t testing.TB, limit uint64, what string, f func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > limit {
		t.Fatalf("%s allocated %d bytes, more than its bound of %d", what, got, limit)
	}
}

// Linear is a bound for a decoder of n input bytes: a fixed allowance
// plus factor bytes per input byte.
func Linear(n int, factor uint64) uint64 {
	return 64<<10 + factor*uint64(n)
}
