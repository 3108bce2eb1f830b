package lincheck

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestModel checks that the model rejects what it must, so that an Ok
// means something.
func TestModel(t *testing.T) {
	app := func(c int, call, ret int64, i uint64, p string, out Output) porcupine.Operation {
		return AppendOp(c, call, ret, "m", i, p, out)
	}
	get := func(c int, call, ret int64, i uint64, out Output) porcupine.Operation {
		return GetOp(c, call, ret, "m", i, out)
	}
	for _, tc := range []struct {
		name    string
		history []porcupine.Operation
		ok      bool
	}{
		{"sequential", []porcupine.Operation{
			app(0, 0, 1, 0, "a", Written),
			app(1, 2, 3, 0, "a", PresentEqual),
			app(1, 4, 5, 0, "b", PresentOther),
			app(0, 6, 7, 2, "c", Ahead),
			get(1, 8, 9, 0, FoundPayload("a")),
			get(1, 10, 11, 1, NotFound),
		}, true},
		{"concurrent get may miss a concurrent append", []porcupine.Operation{
			app(0, 0, 10, 0, "a", Written),
			get(1, 1, 2, 0, NotFound),
			get(1, 3, 4, 0, FoundPayload("a")),
		}, true},
		{"an append learned late spans to when it was learned", []porcupine.Operation{
			app(0, 0, 100, 0, "a", Written),
			get(1, 1, 2, 0, NotFound),
			app(1, 3, 4, 0, "b", PresentOther),
			get(2, 5, 6, 0, FoundPayload("a")),
		}, true},
		{"other ESKs are independent", []porcupine.Operation{
			app(0, 0, 1, 0, "a", Written),
			AppendOp(1, 2, 3, "other", 0, "b", Written),
			AppendOp(1, 4, 5, "other", 1, "c", Written),
			get(0, 6, 7, 1, NotFound),
		}, true},
		{"two writes at one index", []porcupine.Operation{
			app(0, 0, 10, 0, "a", Written),
			app(1, 0, 10, 0, "b", Written),
		}, false},
		{"stale read after the append returned", []porcupine.Operation{
			app(0, 0, 1, 0, "a", Written),
			get(1, 2, 3, 0, NotFound),
		}, false},
		{"read then unread", []porcupine.Operation{
			app(0, 0, 10, 0, "a", Written),
			get(1, 1, 2, 0, FoundPayload("a")),
			get(1, 3, 4, 0, NotFound),
		}, false},
		{"a forked index", []porcupine.Operation{
			app(0, 0, 1, 0, "a", Written),
			get(1, 2, 3, 0, FoundPayload("b")),
		}, false},
		{"present with the wrong equality", []porcupine.Operation{
			app(0, 0, 1, 0, "a", Written),
			app(1, 2, 3, 0, "b", PresentEqual),
		}, false},
		{"ahead at the count", []porcupine.Operation{
			app(0, 0, 1, 0, "a", Written),
			app(1, 2, 3, 1, "b", Ahead),
		}, false},
	} {
		if got := porcupine.CheckOperations(Model, tc.history); got != tc.ok {
			t.Errorf("%s: linearizable = %v, want %v", tc.name, got, tc.ok)
		}
		if !tc.ok { // the failure report must render
			res, path := Check(tc.history, time.Second, t.TempDir())
			if res != porcupine.Illegal || path == "" {
				t.Errorf("%s: check = %s, visualization %q", tc.name, res, path)
			}
		}
	}
}

func TestCounts(t *testing.T) {
	h := []porcupine.Operation{
		AppendOp(0, 0, 1, "m", 0, "a", Written),
		AppendOp(0, 2, 3, "m", 0, "a", PresentEqual),
		AppendOp(0, 4, 5, "m", 0, "b", PresentOther),
		AppendOp(0, 6, 7, "m", 5, "b", Ahead),
		GetOp(0, 8, 9, "m", 0, FoundPayload("a")),
	}
	c := Count(h)
	if c.All() {
		t.Errorf("%v: every outcome, without a get that found nothing", c)
	}
	c = Count(append(h, GetOp(0, 10, 11, "m", 1, NotFound)))
	if !c.All() || c.Written != 1 || c.Gets != 2 || c.Found != 1 {
		t.Errorf("counts %v", c)
	}
}
