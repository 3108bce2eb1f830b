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
// ran, completion stored and folded) with 1 and 4 workers (on one client,
// and on a client each), beside a JetStream work-queue stream doing the
// same work (publish; a pull consumer per worker, each on its own
// connection; handler; ack) on the same kind of node in the same run.
// b.N is the number of tasks, all enqueued at once (pipelined):
//
//	go test -run '^$' -bench Tasks -benchtime 5000x -count 3 ./tasks/
//
// Besides tasks/s it reports enqueue-to-start latency percentiles (all
// tasks queued at once, so this includes queueing) and, for detbus,
// claim-to-start: from the claim event's time to the handler's start.
func BenchmarkTasks(b *testing.B) {
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("jetstream-workqueue/workers=%d", workers), func(b *testing.B) { benchJetStream(b, workers, 0) })
		b.Run(fmt.Sprintf("detbus/workers=%d", workers), func(b *testing.B) { benchDetbus(b, workers, 1, 0) })
		if workers > 1 {
			b.Run(fmt.Sprintf("detbus/workers=%d/clients=%d", workers, workers), func(b *testing.B) { benchDetbus(b, workers, workers, 0) })
		}
	}
}

// BenchmarkTaskLatency measures latency without queueing: one task
// enqueued every millisecond (far below either side's capacity), run by
// 1 and 4 workers, beside the same JetStream work queue as
// BenchmarkTasks. It reports enqueue-to-start percentiles and, for
// detbus, claim-to-start:
//
//	go test -run '^$' -bench TaskLatency -benchtime 2000x -count 3 ./tasks/
func BenchmarkTaskLatency(b *testing.B) {
	const pace = time.Millisecond
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("jetstream-workqueue/workers=%d", workers), func(b *testing.B) { benchJetStream(b, workers, pace) })
		b.Run(fmt.Sprintf("detbus/workers=%d", workers), func(b *testing.B) { benchDetbus(b, workers, 1, pace) })
	}
}

// publishAll publishes b.N messages to subject, body(i) the i-th, made
// when it is published: all at once (pipelined) with pace 0, else one
// every pace. It returns once every one is acknowledged.
func publishAll(b *testing.B, js jetstream.JetStream, subject string, pace time.Duration, body func(i int) []byte) {
	var tick <-chan time.Time
	if pace > 0 {
		t := time.NewTicker(pace)
		defer t.Stop()
		tick = t.C
	}
	futures := make([]jetstream.PubAckFuture, 0, b.N)
	for i := range b.N {
		if tick != nil {
			<-tick
		}
		f, err := js.PublishAsync(subject, body(i))
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
}

// stamp is a task payload holding the time it was made; enqueuedAt reads
// it back.
func stamp() json.RawMessage {
	return json.RawMessage(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`)
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

// benchDetbus runs workers on clients: one client (one connection and
// one fold) shared by all workers, as in one process, or one each, as
// in separate processes.
func benchDetbus(b *testing.B, workers, clients int, pace time.Duration) {
	url := testnats.Node(b).ClientURL()
	ctx := context.Background()
	l := testnats.Log(b, url, transport.Config{})
	if _, err := l.Write(ctx, "tasks.bench", []byte(`{"op":"create_queue"}`)); err != nil {
		b.Fatal(err)
	}
	var lat latencies
	var ran sync.WaitGroup
	ran.Add(b.N)
	wctx, stop := context.WithCancel(ctx)
	var stopped sync.WaitGroup
	var ws []*tasks.Worker
	var cs []*tasks.Client
	for range clients {
		cs = append(cs, openClient(b, url))
	}
	for i := range workers {
		wc := cs[i%clients]
		w, err := tasks.NewWorker(wc, "bench", func(ctx context.Context, t tasks.Task) error {
			now := time.Now()
			lat.add("enqueue-to-start", now.Sub(enqueuedAt(t.Payload)))
			lat.add("claim-to-start", now.Sub(t.LeaseUntil.Add(-30*time.Second)))
			ran.Done()
			return nil
		}, tasks.WorkerOptions{ID: fmt.Sprint("w", i), Concurrency: benchConcurrency})
		if err != nil {
			b.Fatal(err)
		}
		ws = append(ws, w)
		stopped.Add(1)
		go func() { defer stopped.Done(); _ = w.Run(wctx) }()
	}
	b.ResetTimer()
	start := time.Now()
	// Enqueue as any NATS client can, like the baseline publishes.
	publishAll(b, l.JetStream(), "events.tasks.bench", pace, func(i int) []byte {
		op := machine.Op{Op: machine.OpEnqueue, ID: "t" + strconv.Itoa(i), Payload: stamp()}
		return op.AppendJSON(nil)
	})
	ran.Wait()
	// Completed: the workers' folds have applied every complete.
	for {
		var done uint64
		for _, w := range ws {
			done += w.Stats().Completed
		}
		if done == uint64(b.N) {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	stopped.Wait()
	if pace == 0 {
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	}
	var batches, lost uint64
	for _, w := range ws {
		st := w.Stats()
		batches += st.Batches
		lost += st.Lost
	}
	b.ReportMetric(float64(batches), "events")
	b.ReportMetric(float64(lost), "lost-claims")
	lat.report(b)
}

func benchJetStream(b *testing.B, workers int, pace time.Duration) {
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
	publishAll(b, js, "wq.bench", pace, func(int) []byte { return stamp() })
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
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if pace == 0 {
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	}
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

// benchConcurrency is the concurrency of each detbus worker.
const benchConcurrency = 1000
