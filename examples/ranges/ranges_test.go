package ranges

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/transport"
)

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Range
		ok   bool
	}{
		{"a..m", Range{"a", "m"}, true},
		{"m..", Range{"m", ""}, true},
		{"..m", Range{"", "m"}, true},
		{"..", Range{}, true},
		{"m..a", Range{}, false},
		{"a..a", Range{}, false},
		{"a-m", Range{}, false},
		{"a..b..c", Range{}, false},
	} {
		got, err := ParseRange(tc.in)
		if tc.ok != (err == nil) || (tc.ok && got != tc.want) {
			t.Errorf("%q: %+v, %v", tc.in, got, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidRange) {
			t.Errorf("%q: %v does not wrap ErrInvalidRange", tc.in, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("%q prints as %q", tc.in, got)
		}
	}
	r := Range{"d", "h"}
	for key, want := range map[string]bool{"c": false, "d": true, "gzz": true, "h": false} {
		if r.Contains(key) != want {
			t.Errorf("%s contains %q: %v", r, key, !want)
		}
	}
}

func TestDecide(t *testing.T) {
	r := Range{"a", "m"}
	claims := []Claim{{"n3", 5}, {"n1", 7}, {"n2", 7}, {"n4", -1}}
	want := Ownership{Range: r, Owner: "n1", Priority: 7, Claims: []Claim{{"n1", 7}, {"n2", 7}, {"n3", 5}, {"n4", -1}}}
	// Any order of the claims gives the same ownership.
	rnd := rand.New(rand.NewPCG(1, 1))
	for range 20 {
		rnd.Shuffle(len(claims), func(i, j int) { claims[i], claims[j] = claims[j], claims[i] })
		if got := Decide(r, claims); !reflect.DeepEqual(got, want) {
			t.Fatalf("Decide(%v) = %+v, want %+v", claims, got, want)
		}
	}
	if got := Decide(r, nil); got.Owner != "" {
		t.Errorf("no claims: owner %q", got.Owner)
	}
}

// replica is one node's store and registry, on a connection of its own.
type replica struct {
	store *kv.Store
	reg   *Registry
}

func openReplica(t *testing.T, url string, opts kv.Options) replica {
	t.Helper()
	l := testnats.Log(t, url, transport.Config{})
	if opts.SnapshotEvery == 0 {
		opts.SnapshotEvery, opts.SnapshotInterval = -1, -1
	}
	s, err := kv.Open(t.Context(), l, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	reg, err := Open(t.Context(), s, "")
	if err != nil {
		t.Fatal(err)
	}
	return replica{s, reg}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	srv := testnats.Node(t)
	r := openReplica(t, srv.ClientURL(), kv.Options{})
	ctx := t.Context()
	am, mz := Range{"a", "m"}, Range{"m", ""}
	for _, step := range []struct {
		node string
		r    Range
		p    int64 // < 0: release
	}{
		{"n1", am, 3}, {"n2", am, 5}, {"n1", mz, 1}, {"n2", am, -1}, {"n1", am, 2}, {"n2", am, 4},
	} {
		var err error
		if step.p < 0 {
			_, err = r.reg.Release(ctx, step.node, step.r)
		} else {
			_, err = r.reg.Register(ctx, step.node, step.r, step.p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	owners, err := r.reg.Owners()
	if err != nil {
		t.Fatal(err)
	}
	want := []Ownership{
		{Range: am, Owner: "n2", Priority: 4, Claims: []Claim{{"n2", 4}, {"n1", 2}}},
		{Range: mz, Owner: "n1", Priority: 1, Claims: []Claim{{"n1", 1}}},
	}
	if !reflect.DeepEqual(owners, want) {
		t.Fatalf("owners %+v, want %+v", owners, want)
	}
	if o, ok, _ := r.reg.OwnerOf("q"); !ok || o.Owner != "n1" {
		t.Errorf("owner of q: %+v, %v", o, ok)
	}
	if _, err := r.reg.Register(ctx, "n1", Range{"z", "a"}, 1); !errors.Is(err, ErrInvalidRange) {
		t.Errorf("an inverted range: %v", err)
	}
	// A table of another type is refused.
	if _, err := r.store.CreateTable(ctx, "other", kv.TypeLWW); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, r.store, "other"); !errors.Is(err, kv.ErrTableType) {
		t.Errorf("opening an lww table: %v", err)
	}
}

// TestReplicasConverge has several nodes register and release ranges at
// once, each through its own replica, and checks that every replica, and
// one that replays the log afterwards, names the same owners.
func TestReplicasConverge(t *testing.T) {
	t.Parallel()
	srv := testnats.Node(t)
	url := srv.ClientURL()
	rs := []Range{{"", "d"}, {"d", "h"}, {"h", "m"}, {"m", "r"}, {"r", ""}}
	const nodes, ops = 4, 40
	var reps []replica
	for range nodes {
		reps = append(reps, openReplica(t, url, kv.Options{}))
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	for i, rep := range reps {
		node := fmt.Sprintf("node-%d", i+1)
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 7))
			for range ops {
				r := rs[rnd.IntN(len(rs))]
				var err error
				if rnd.IntN(4) == 0 {
					_, err = rep.reg.Release(ctx, node, r)
				} else {
					_, err = rep.reg.Register(ctx, node, r, rnd.Int64N(10))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	late := openReplica(t, url, kv.Options{NoRestore: true})
	reps = append(reps, late)
	var first []Ownership
	for i, rep := range reps {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := rep.store.Sync(sctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		owners, err := rep.reg.Owners()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = owners
			continue
		}
		if !reflect.DeepEqual(owners, first) {
			t.Fatalf("replica %d names other owners:\n%+v\n%+v", i, owners, first)
		}
	}
	if len(first) == 0 {
		t.Fatal("no range has an owner")
	}
	t.Logf("owners: %+v", first)
}
