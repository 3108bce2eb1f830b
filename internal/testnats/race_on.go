//go:build race

package testnats

// Race reports whether the race detector is on. Tests that build logs of
// millions of events run without it (scripts/test.sh runs them in a
// second pass), since the detector slows the embedded server tenfold.
const Race = true
