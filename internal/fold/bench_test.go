package fold_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchEvents is how many events BenchmarkRead reads:
// $DETBUS_FOLD_BENCH_EVENTS, default 200,000.
func benchEvents(b *testing.B) int {
	if v := os.Getenv("DETBUS_FOLD_BENCH_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("DETBUS_FOLD_BENCH_EVENTS=%q: want a positive number", v)
		}
		return n
	}
	return 200_000
}

// BenchmarkRead reads a log of kv-like events (100-byte JSON payloads
// over 10,000 keys of one ESK) to its end, each way in every iteration
// on the same embedded server, and reports each rate and its ratio to a
// raw ordered consumer reading the same messages:
//
//   - raw: an ordered JetStream consumer, its Next and Metadata;
//   - events: Log.Events, one event at a time, handed to the folding
//     goroutine through a channel (how kv and tasks read before);
//   - batches: Log.Batches;
//   - fold: a Fold over LogSource with an Apply that does nothing,
//     until Wait for the last event returns.
//
// Run it with:
//
//	go test -run '^$' -bench Read -benchtime 5x ./internal/fold/
func BenchmarkRead(b *testing.B) {
	n := benchEvents(b)
	url := testnats.Node(b).ClientURL()
	l := testnats.Log(b, url, transport.Config{})
	err := testnats.Publish(context.Background(), url, n, func(i int) (string, []byte) {
		return l.Subject("kv.users"), []byte(`{"op":"set","key":"user-` + strconv.Itoa(i%10000) + `","value":{"n":` + strconv.Itoa(i) + `,"name":"someone"}}`)
	})
	if err != nil {
		b.Fatal(err)
	}
	last := uint64(n)
	ctx := context.Background()
	ways := []struct {
		name string
		read func(l *transport.Log)
	}{
		{"raw", func(l *transport.Log) { readRaw(b, l, last) }},
		{"events", func(l *transport.Log) { readEvents(b, l, last) }},
		{"batches", func(l *transport.Log) {
			for evs, err := range l.Batches(ctx, []string{"kv.>"}, transport.ReadOptions{Follow: true}) {
				if err != nil {
					b.Fatal(err)
				}
				if evs[len(evs)-1].Seq >= last {
					break
				}
			}
		}},
		{"fold", func(l *transport.Log) {
			var mu sync.RWMutex
			f, err := fold.New(fold.Config[struct{}]{Name: "bench", Sources: []fold.Source{fold.LogSource(l, "kv.>")}, Mu: &mu, KeepOutcomes: 4096,
				Apply: func(int, *transport.Event) struct{} { return struct{}{} }})
			if err != nil {
				b.Fatal(err)
			}
			f.Start(nil)
			if err := f.Wait(ctx, 0, last); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}},
	}
	took := make([]time.Duration, len(ways))
	b.ResetTimer()
	for range b.N {
		for i, w := range ways {
			fresh := testnats.Log(b, url, transport.Config{}) // learns nothing from another way
			start := time.Now()
			w.read(fresh)
			took[i] += time.Since(start)
			fresh.Close()
		}
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	for i, w := range ways {
		rate := float64(n*b.N) / took[i].Seconds()
		b.ReportMetric(rate, w.name+"-events/s")
		if i > 0 {
			b.ReportMetric(took[0].Seconds()/took[i].Seconds(), w.name+"/raw")
		}
	}
}

// readRaw reads to last with an ordered consumer, as kv's fold
// benchmark's baseline does.
func readRaw(b *testing.B, l *transport.Log, last uint64) {
	cons, err := l.JetStream().OrderedConsumer(context.Background(), transport.DefaultStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.Subject("kv.>")}})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next()
		if errors.Is(err, nats.ErrTimeout) {
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		md, err := msg.Metadata()
		if err != nil {
			b.Fatal(err)
		}
		if md.Sequence.Stream >= last {
			return
		}
	}
}

// readEvents reads to last with Log.Events, handing the events through
// a channel to a goroutine that takes what arrived in batches.
func readEvents(b *testing.B, l *transport.Log, last uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := make(chan transport.Event, 1024)
	go func() {
		defer close(evs)
		for ev, err := range l.Events(ctx, []string{"kv.>"}, transport.ReadOptions{Follow: true}) {
			if err != nil {
				return
			}
			select {
			case evs <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	batch := make([]transport.Event, 0, 64)
	for ev := range evs {
		batch = append(batch[:0], ev)
	more:
		for len(batch) < 64 {
			select {
			case ev := <-evs:
				batch = append(batch, ev)
			default:
				break more
			}
		}
		if batch[len(batch)-1].Seq >= last {
			return
		}
	}
	b.Fatal("the events ended")
}
