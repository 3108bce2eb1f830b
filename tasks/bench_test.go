package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkTasks measures tasks per second end to end (enqueue, handler
// ran, completion stored) with 1 and 4 workers, each on its own
// connection, beside a JetStream work-queue stream doing the same work
// (publish; pull consumer; handler; ack) on the same kind of node in the
// same run. b.N is the number of tasks, all enqueued at once (pipelined):
//
//	go test -run '^$' -bench Tasks -benchtime 5000x -count 3 ./tasks/
//
// Besides tasks/s it reports enqueue-to-start latency percentiles (all
// tasks queued at once, so this includes queueing) and, for detbus,
// claim-to-start: from the claim event's time to the handler's start.
func BenchmarkTasks(b *testing.B) {
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("jetstream-workqueue/workers=%d", workers), func(b *testing.B) { benchJetStream(b, workers) })
		b.Run(fmt.Sprintf("detbus/workers=%d", workers), func(b *testing.B) { benchDetbus(b, workers) })
	}
}

// latencies collects durations from concurrent handlers.
type latencies struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func (l *latencies) add(name string, d time.Duration) {
	l.mu.Lock()
	if l.d == nil {
		l.d = map[string][]time.Duration{}
	}
	l.d[name] = append(l.d[name], d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, ds := range l.d {
		slices.Sort(ds)
		for _, p := range []struct {
			label string
			q     float64
		}{{"p50", 0.50}, {"p99", 0.99}} {
			b.ReportMetric(float64(ds[int(p.q*float64(len(ds)-1))].Microseconds()), name+"-"+p.label+"-µs")
		}
	}
}

func enqueuedAt(payload []byte) time.Time {
	var p struct{ T int64 }
	_ = json.Unmarshal(payload, &p)
	return time.Unix(0, p.T)
}

func benchDetbus(b *testing.B, workers int) {
	url := testnats.Node(b).ClientURL()
	ctx := context.Background()
	l := testnats.Log(b, url, transport.Config{})
	c, err := tasks.Open(ctx, l, tasks.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Create(ctx, "bench", machine.DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	var lat latencies
	var ran sync.WaitGroup
	ran.Add(b.N)
	wctx, stop := context.WithCancel(ctx)
	var stopped sync.WaitGroup
	for i := range workers {
		wc := openClient(b, url)
		w, err := tasks.NewWorker(wc, "bench", func(ctx context.Context, t tasks.Task) error {
			now := time.Now()
			lat.add("enqueue-to-start", now.Sub(enqueuedAt(t.Payload)))
			lat.add("claim-to-start", now.Sub(t.LeaseUntil.Add(-30*time.Second)))
			ran.Done()
			return nil
		}, tasks.WorkerOptions{ID: fmt.Sprint("w", i), Concurrency: 256})
		if err != nil {
			b.Fatal(err)
		}
		stopped.Add(1)
		go func() { defer stopped.Done(); _ = w.Run(wctx) }()
	}
	b.ResetTimer()
	start := time.Now()
	pending := make([]*transport.PendingWrite, 0, b.N)
	for i := range b.N {
		op := machine.Op{Op: machine.OpEnqueue, ID: "t" + strconv.Itoa(i), Payload: json.RawMessage(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`)}
		p, err := l.WriteAsync(ctx, "tasks.bench", op.AppendJSON(nil), transport.WithHLC())
		if err != nil {
			b.Fatal(err)
		}
		pending = append(pending, p)
	}
	for _, p := range pending {
		if _, err := p.Result(); err != nil {
			b.Fatal(err)
		}
	}
	ran.Wait()
	// Completed: every complete is stored and folded.
	for {
		if err := c.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		info, err := c.Queue("bench")
		if err != nil {
			b.Fatal(err)
		}
		if info.Tasks[machine.StateCompleted] == b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	stopped.Wait()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	lat.report(b)
}

func benchJetStream(b *testing.B, workers int) {
	url := testnats.Node(b).ClientURL()
	ctx := context.Background()
	js, err := jetstream.New(testnats.Conn(b, url))
	if err != nil {
		b.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WQ", Subjects: []string{"wq.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second}); err != nil {
		b.Fatal(err)
	}
	var lat latencies
	var ran sync.WaitGroup
	ran.Add(b.N)
	for range workers {
		wjs, err := jetstream.New(testnats.Conn(b, url))
		if err != nil {
			b.Fatal(err)
		}
		cons, err := wjs.Consumer(ctx, "WQ", "workers")
		if err != nil {
			b.Fatal(err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			lat.add("enqueue-to-start", time.Since(enqueuedAt(m.Data())))
			ran.Done()
			_ = m.Ack()
		})
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Stop()
	}
	b.ResetTimer()
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, b.N)
	for range b.N {
		f, err := js.PublishAsync("wq.bench", []byte(`{"t":`+strconv.FormatInt(time.Now().UnixNano(), 10)+`}`))
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	ran.Wait()
	// Completed: every ack is stored, so the work queue is empty.
	for {
		info, err := stream.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	lat.report(b)
}

// BenchmarkFold measures how fast a client folds task events: b.N
// enqueues written beforehand, folded by a new client.
func BenchmarkFold(b *testing.B) {
	url := testnats.Node(b).ClientURL()
	ctx := context.Background()
	l := testnats.Log(b, url, transport.Config{})
	c := openClient(b, url)
	if _, err := c.Create(ctx, "bench", machine.DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	var last *transport.PendingWrite
	for i := range b.N {
		op := machine.Op{Op: machine.OpEnqueue, ID: "t" + strconv.Itoa(i), Payload: json.RawMessage(`{"t":1}`)}
		p, err := l.WriteAsync(ctx, "tasks.bench", op.AppendJSON(nil), transport.WithHLC())
		if err != nil {
			b.Fatal(err)
		}
		last = p
	}
	if _, err := last.Result(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	c2, err := tasks.Open(ctx, l, tasks.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	c2.Close()
}
