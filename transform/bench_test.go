package transform_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

// echoDET outputs each input as it came.
type echoDET struct{ N uint64 }

func (e *echoDET) Step(_ *transform.Context, in transform.Input) ([][]byte, error) {
	e.N++
	return [][]byte{in.Data}, nil
}
func (e *echoDET) Snapshot() ([]byte, error) { return transform.JSON(e), nil }
func (e *echoDET) Restore(b []byte) error    { return nil }

// BenchmarkTransform: b.N inputs published at once through an echo DET
// with 1 and 3 racing instances, timed until the last output arrives,
// beside the raw baseline in the same run: the same inputs published to
// a stream and consumed. Compare events/s as ratios.
func BenchmarkTransform(b *testing.B) {
	payload := []byte(fmt.Sprintf(`{"pad":"%0100d"}`, 0))
	b.Run("raw publish-consume", func(b *testing.B) {
		s := testnats.Node(b)
		l := testnats.Log(b, s.ClientURL(), transport.Config{})
		pipeline(b, l, "raw.in", "raw.in", payload)
	})
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("%d instances", n), func(b *testing.B) {
			s := testnats.Node(b)
			url := s.ClientURL()
			l := testnats.Log(b, url, transport.Config{})
			spec := transform.Spec{Name: "echo", Version: "1", Inputs: []string{"echo.in"}, Output: "echo.out",
				New: func() transform.Transform { return &echoDET{} }}
			for i := range n {
				cfg := transform.Config{Spec: spec, Instance: fmt.Sprint("i", i), Log: testnats.Log(b, url, transport.Config{})}
				r, err := transform.NewRunner(cfg)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); _ = r.Run(ctx) }()
				b.Cleanup(func() { cancel(); <-done })
			}
			pipeline(b, l, "echo.in", "echo.out", payload)
		})
	}
}

// pipeline publishes b.N events to in, asynchronously, and waits for
// b.N events on out.
func pipeline(b *testing.B, l *transport.Log, in, out string, payload []byte) {
	ctx := context.Background()
	// Warm up: one event through.
	if _, err := l.Write(ctx, in, payload); err != nil {
		b.Fatal(err)
	}
	// The outputs are read with a plain consumer in every case.
	js := l.JetStream()
	cons, err := js.OrderedConsumer(ctx, l.Config().Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.Subject(out)}})
	if err != nil {
		b.Fatal(err)
	}
	first := make(chan struct{})
	arrived := make(chan struct{}, 1<<20)
	seen := 0
	cc, err := cons.Consume(func(jetstream.Msg) {
		if seen++; seen == 1 {
			close(first)
			return
		}
		arrived <- struct{}{}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	select {
	case <-first:
	case <-time.After(time.Minute):
		b.Fatal("no output within a minute")
	}
	subject := l.Subject(in)
	b.ResetTimer()
	for range b.N {
		if _, err := js.PublishAsync(subject, payload, jetstream.WithStallWait(10*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		select {
		case <-arrived:
		case <-time.After(time.Minute):
			b.Fatal("outputs stopped")
		}
	}
	b.StopTimer()
	reportRate(b)
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
