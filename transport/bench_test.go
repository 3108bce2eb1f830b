package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Each benchmark runs detbus beside the raw JetStream operation it is built
// on, on the same embedded server in the same run: compare the pairs as
// ratios, since absolute timings on a shared machine are noisy.

var payload128 = bytes.Repeat([]byte("x"), 128)

var benchRun atomic.Int64

func benchESK(name string) string {
	return fmt.Sprintf("bench.%s.%d", name, benchRun.Add(1))
}

// benchSetup starts one server with the detbus log and, beside it, a plain
// JetStream stream RAW (subjects raw.>, file storage, defaults otherwise)
// for the baseline.
func benchSetup(b *testing.B) (*transport.Log, jetstream.JetStream) {
	b.Helper()
	s := testnats.Node(b)
	l := testnats.Log(b, s.ClientURL(), transport.Config{})
	js, err := jetstream.New(testnats.Conn(b, s.ClientURL()))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage, AllowDirect: true}); err != nil {
		b.Fatal(err)
	}
	return l, js
}

func rawSubject(name string) string { return "raw." + benchESK(name) }

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkWrite: pipelined unconditional writes of 128-byte events to
// one ESK, each acknowledged and (for detbus) given its index.
func BenchmarkWrite(b *testing.B) {
	l, js := benchSetup(b)
	ctx := context.Background()
	b.Run("raw=jetstream-publish-async", func(b *testing.B) {
		rawPublishAsync(b, js, rawSubject("w"))
	})
	b.Run("detbus=write-async", func(b *testing.B) {
		esk := benchESK("w")
		pending := make([]*transport.PendingWrite, 0, b.N)
		for b.Loop() {
			p, err := l.WriteAsync(ctx, esk, payload128)
			if err != nil {
				b.Fatal(err)
			}
			pending = append(pending, p)
		}
		for i, p := range pending {
			pos, err := p.Result()
			if err != nil || pos.Index != uint64(i) {
				b.Fatalf("write %d: %+v %v", i, pos, err)
			}
		}
		reportRate(b)
	})
}

// BenchmarkPublish: pipelined unconditional writes of 128-byte events to
// one ESK, each acknowledged, returning the stream position without the
// index.
func BenchmarkPublish(b *testing.B) {
	l, js := benchSetup(b)
	ctx := context.Background()
	b.Run("raw=jetstream-publish-async", func(b *testing.B) {
		rawPublishAsync(b, js, rawSubject("p"))
	})
	b.Run("detbus=publish-async", func(b *testing.B) {
		esk := benchESK("p")
		pending := make([]*transport.PendingPublish, 0, b.N)
		for b.Loop() {
			p, err := l.PublishAsync(ctx, esk, payload128)
			if err != nil {
				b.Fatal(err)
			}
			pending = append(pending, p)
		}
		for i, p := range pending {
			if pos, err := p.Result(); err != nil || pos.Seq == 0 {
				b.Fatalf("publish %d: %+v %v", i, pos, err)
			}
		}
		reportRate(b)
	})
}

func rawPublishAsync(b *testing.B, js jetstream.JetStream, subj string) {
	futures := make([]jetstream.PubAckFuture, 0, b.N)
	for b.Loop() {
		f, err := js.PublishAsync(subj, payload128, jetstream.WithStallWait(10*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
	}
	<-js.PublishAsyncComplete()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	reportRate(b)
}

// BenchmarkExistsOrWriteSequential: conditional appends one after another
// on one ESK.
func BenchmarkExistsOrWriteSequential(b *testing.B) {
	l, js := benchSetup(b)
	ctx := context.Background()
	b.Run("raw=publish-expected-last-subject-seq", func(b *testing.B) {
		rawCAS(b, js, rawSubject("s"), b.N)
		reportRate(b)
	})
	b.Run("detbus=exists-or-write", func(b *testing.B) {
		esk := benchESK("s")
		var i uint64
		for b.Loop() {
			r, err := l.ExistsOrWrite(ctx, esk, i, payload128)
			if err != nil || r.Outcome != transport.Written {
				b.Fatalf("%d: %+v %v", i, r, err)
			}
			i++
		}
		reportRate(b)
	})
}

func rawCAS(b *testing.B, js jetstream.JetStream, subj string, n int) {
	ctx := context.Background()
	var last uint64
	for range n {
		m := &nats.Msg{Subject: subj, Data: payload128, Header: nats.Header{}}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			b.Fatal(err)
		}
		last = ack.Sequence
	}
}

// BenchmarkExistsOrWriteParallel64: 64 goroutines, each appending
// conditionally to its own ESK.
func BenchmarkExistsOrWriteParallel64(b *testing.B) {
	const writers = 64
	l, js := benchSetup(b)
	ctx := context.Background()
	split := func(n, w int) int { return n/writers + map[bool]int{true: 1}[w < n%writers] }
	b.Run("raw=publish-expected-last-subject-seq", func(b *testing.B) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() { rawCAS(b, js, rawSubject("p"), split(b.N, w)) })
		}
		wg.Wait()
		reportRate(b)
	})
	b.Run("detbus=exists-or-write", func(b *testing.B) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				esk := benchESK("p")
				for i := range uint64(split(b.N, w)) {
					r, err := l.ExistsOrWrite(ctx, esk, i, payload128)
					if err != nil || r.Outcome != transport.Written {
						b.Errorf("%s@%d: %+v %v", esk, i, r, err)
						return
					}
				}
			})
		}
		wg.Wait()
		reportRate(b)
	})
}
