package testnats

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
)

// WalkTruth reads every message of the stream under prefix ns in order,
// with batched direct gets of the wildcard subject from the start, and
// numbers each ESK's messages as it goes: the oracle that indices from
// counts are checked against. It walks until it has as many messages as
// the stream leader counts, so a lagging replica only makes it ask again.
func WalkTruth(t Fataler, url string, ns string) map[string][]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := transport.Connect(ctx, url, transport.Config{NoProvision: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	counts, err := l.Counts(ctx, ns+".>")
	if err != nil {
		t.Fatal(err)
	}
	var want int
	for _, n := range counts {
		want += int(n)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for {
		truth := map[string][]uint64{}
		got := 0
		next := uint64(1)
		for got < want && ctx.Err() == nil {
			sub, err := nc.SubscribeSync(nats.NewInbox())
			if err != nil {
				t.Fatal(err)
			}
			req := fmt.Sprintf(`{"seq":%d,"next_by_subj":"events.%s.>","batch":1000}`, next, ns)
			if err := nc.PublishRequest("$JS.API.DIRECT.GET."+transport.DefaultStream, sub.Subject, []byte(req)); err != nil {
				t.Fatal(err)
			}
			for {
				m, err := sub.NextMsg(5 * time.Second)
				if err != nil || m.Header.Get("Status") != "" {
					break
				}
				seq, _ := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
				esk := m.Header.Get("Nats-Subject")[len("events."):]
				truth[esk] = append(truth[esk], seq)
				got++
				next = seq + 1
			}
			_ = sub.Unsubscribe()
		}
		if got == want {
			return truth
		}
		if ctx.Err() != nil {
			t.Fatalf("walked %d messages under %s, the leader counts %d", got, ns, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Fataler is what the checks need of a test: *testing.T and *rapid.T.
type Fataler interface {
	Helper()
	Fatal(...any)
	Fatalf(string, ...any)
}

// CheckIndices checks a fresh client's Get, IndexOf and Events
// against the walked truth.
func CheckIndices(t Fataler, url string, cfg transport.Config, ns string, truth map[string][]uint64, rng *rand.Rand) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fresh := func() *transport.Log {
		l, err := transport.Connect(ctx, url, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for esk, seqs := range truth {
		l := fresh()
		defer l.Close()
		// Reads in a random order, each from what the previous taught.
		for _, i := range rng.Perm(len(seqs)) {
			ev, err := l.Get(ctx, esk, uint64(i))
			if err != nil || ev.Seq != seqs[i] {
				t.Fatalf("Get(%s, %d) = seq %d, %v; the walk says %d", esk, i, ev.Seq, err, seqs[i])
			}
		}
		l2 := fresh()
		defer l2.Close()
		for _, i := range rng.Perm(len(seqs)) {
			got, err := l2.IndexOf(ctx, esk, seqs[i])
			if err != nil || got != uint64(i) {
				t.Fatalf("IndexOf(%s, %d) = %d, %v; the walk says %d", esk, seqs[i], got, err, i)
			}
		}
		// Past the end, as the leader counts now: the walk is a prefix, and
		// a write still in flight when it ran may have landed since.
		l3 := fresh()
		defer l3.Close()
		for {
			n, err := l3.Count(ctx, esk)
			if err != nil {
				t.Fatal(err)
			}
			if n < uint64(len(seqs)) {
				t.Fatalf("the leader counts %d events of %s, the walk found %d", n, esk, len(seqs))
			}
			_, err = l3.Get(ctx, esk, n)
			if errors.Is(err, transport.ErrNotFound) {
				break
			}
			if m, _ := l3.Count(ctx, esk); m == n {
				t.Fatalf("Get(%s, %d) past the end: %v, want ErrNotFound", esk, n, err)
			}
		}
	}
	// Events from a random position number every ESK as the walk does.
	var all []uint64
	for _, seqs := range truth {
		all = append(all, seqs...)
	}
	slices.Sort(all)
	for range 3 {
		from := all[rng.IntN(len(all))]
		l := fresh()
		defer l.Close()
		for ev, err := range l.Events(ctx, []string{ns + ".>"}, transport.ReadOptions{From: from}) {
			if err != nil {
				t.Fatal(err)
			}
			seqs := truth[ev.ESK]
			if int(ev.Index) >= len(seqs) || seqs[ev.Index] != ev.Seq {
				t.Fatalf("Events from %d: %s at seq %d numbered %d; the walk disagrees", from, ev.ESK, ev.Seq, ev.Index)
			}
		}
	}
}
