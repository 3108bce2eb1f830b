package kv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// foldOps is how many ops BenchmarkFold replays: $DETBUS_KV_FOLD_OPS,
// default 20000 so that a test run stays short; set 1000000 for the
// figures in the README.
func foldOps(b *testing.B) int {
	if v := os.Getenv("DETBUS_KV_FOLD_OPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("DETBUS_KV_FOLD_OPS=%q: want a positive number", v)
		}
		return n
	}
	return 20000
}

// benchOp is the i-th op of the fold benchmark: half sets on an lww table
// over 10,000 keys, a quarter counter increments, a quarter orset adds.
func benchOp(i int) (esk string, payload []byte) {
	k := i % 10000
	switch i % 4 {
	case 0, 1:
		return "kv.users", fmt.Appendf(nil, `{"op":"set","key":"user-%d","value":{"n":%d,"name":"someone"}}`, k, i)
	case 2:
		return "kv.hits", fmt.Appendf(nil, `{"op":"incr","key":"page-%d","delta":%d}`, k%100, i%7)
	}
	return "kv.tags", fmt.Appendf(nil, `{"op":"add","key":"tag-%d","element":"e%d"}`, k%1000, i%13)
}

// fillLog writes the declarations and n ops with pipelined JetStream
// publishes, and returns the last sequence.
func fillLog(b *testing.B, l *transport.Log, n int) uint64 {
	b.Helper()
	ctx := context.Background()
	js := l.JetStream()
	decl := []string{`{"op":"set","key":"users","value":{"crdt":"lww"}}`, `{"op":"set","key":"hits","value":{"crdt":"counter"}}`, `{"op":"set","key":"tags","value":{"crdt":"orset"}}`}
	for _, d := range decl {
		if _, err := js.Publish(ctx, l.Subject("kv._config"), []byte(d)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		esk, p := benchOp(i)
		for {
			_, err := js.PublishAsync(l.Subject(esk), p)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				b.Fatal(err)
			}
			select { // the server is behind: let it catch up
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("publishing the ops stalled")
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("publishing the ops timed out")
	}
	st, err := l.State(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	return st.LastSeq
}

// BenchmarkFold replays the log's ops into a new store (no snapshots)
// until it has folded the last one, beside an ordered JetStream consumer
// reading the same messages, and reports both rates and their ratio.
func BenchmarkFold(b *testing.B) {
	n := foldOps(b)
	_, l := node(b)
	last := fillLog(b, l, n)
	total := float64(n + 3)
	ctx := context.Background()
	var raw, fold time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		cons, err := l.JetStream().OrderedConsumer(ctx, transport.DefaultStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.Subject("kv.>")}})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages()
		if err != nil {
			b.Fatal(err)
		}
		for {
			msg, err := it.Next()
			if errors.Is(err, nats.ErrTimeout) {
				continue // a slow pull on a loaded machine; the iterator goes on
			}
			if err != nil {
				b.Fatalf("raw consumer: %v", err)
			}
			md, err := msg.Metadata()
			if err != nil {
				b.Fatal(err)
			}
			if len(msg.Data()) == 0 {
				b.Fatal("empty message")
			}
			if md.Sequence.Stream >= last {
				break
			}
		}
		it.Stop()
		raw += time.Since(start)

		start = time.Now()
		s, err := Open(ctx, l, Options{NoRestore: true, SnapshotEvery: -1, SnapshotInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.waitSeq(ctx, last); err != nil {
			b.Fatalf("fold: %v", err)
		}
		fold += time.Since(start)
		if info, _ := s.Table("users"); info.Ops == 0 {
			b.Fatal("nothing folded")
		}
		s.Close()
	}
	rawRate := total * float64(b.N) / raw.Seconds()
	foldRate := total * float64(b.N) / fold.Seconds()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rawRate, "raw-msgs/s")
	b.ReportMetric(foldRate, "kv-ops/s")
	b.ReportMetric(foldRate/rawRate, "kv/raw")
}

// BenchmarkPut measures the round trip of a write that returns once the
// store has folded it (Set, then Wait, which returns at once) beside a
// put to a NATS KV bucket on the same server, one at a time, and beside a
// put to a bucket that a NATS KV watcher follows (as a store follows the
// log: the server then also delivers every put).
func BenchmarkPut(b *testing.B) {
	_, l := node(b)
	ctx := context.Background()
	s := open(b, l, Options{})
	if _, err := s.CreateTable(ctx, "users", TypeLWW); err != nil {
		b.Fatal(err)
	}
	js := l.JetStream()
	plain, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench", Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	watched, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "watched", Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	w, err := watched.WatchAll(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for range w.Updates() {
		}
	}()
	value := []byte(`{"n":1,"name":"someone"}`)
	var kvT, plainT, watchedT time.Duration
	b.ResetTimer()
	for i := range b.N {
		key := "user-" + strconv.Itoa(i%1000)
		start := time.Now()
		if _, err := plain.Put(ctx, key, value); err != nil {
			b.Fatal(err)
		}
		plainT += time.Since(start)

		start = time.Now()
		if _, err := watched.Put(ctx, key, value); err != nil {
			b.Fatal(err)
		}
		watchedT += time.Since(start)

		start = time.Now()
		pos, err := s.Do(ctx, "users", Op{Op: OpSet, Key: key, Value: value})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Wait(ctx, pos); err != nil {
			b.Fatal(err)
		}
		kvT += time.Since(start)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(plainT.Nanoseconds())/float64(b.N), "nats-kv-put-ns")
	b.ReportMetric(float64(watchedT.Nanoseconds())/float64(b.N), "nats-kv-put-watched-ns")
	b.ReportMetric(float64(kvT.Nanoseconds())/float64(b.N), "kv-set-ns")
	b.ReportMetric(kvT.Seconds()/plainT.Seconds(), "kv/nats")
	b.ReportMetric(kvT.Seconds()/watchedT.Seconds(), "kv/nats-watched")
}

// BenchmarkGet measures a read from the store's local state beside a get
// from a NATS KV bucket on the same server (a round trip).
func BenchmarkGet(b *testing.B) {
	_, l := node(b)
	ctx := context.Background()
	s := open(b, l, Options{})
	if _, err := s.CreateTable(ctx, "users", TypeLWW); err != nil {
		b.Fatal(err)
	}
	bucket, err := l.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench", Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	value := []byte(`{"n":1,"name":"someone"}`)
	for i := range 100 {
		key := "user-" + strconv.Itoa(i)
		if _, err := s.Do(ctx, "users", Op{Op: OpSet, Key: key, Value: value}); err != nil {
			b.Fatal(err)
		}
		if _, err := bucket.Put(ctx, key, value); err != nil {
			b.Fatal(err)
		}
	}
	var kvT, natsT time.Duration
	b.ResetTimer()
	for i := range b.N {
		key := "user-" + strconv.Itoa(i%100)
		start := time.Now()
		if _, err := bucket.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
		natsT += time.Since(start)
		start = time.Now()
		if _, err := s.Get("users", key); err != nil {
			b.Fatal(err)
		}
		kvT += time.Since(start)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(natsT.Nanoseconds())/float64(b.N), "nats-kv-get-ns")
	b.ReportMetric(float64(kvT.Nanoseconds())/float64(b.N), "kv-get-ns")
	b.ReportMetric(kvT.Seconds()/natsT.Seconds(), "kv/nats")
}

// BenchmarkApply measures the fold alone, from memory: decoding and
// applying the ops of BenchmarkFold, without NATS.
func BenchmarkApply(b *testing.B) {
	evs := make([]event, 0, 4096)
	f := newFakeLog()
	for i := range cap(evs) {
		esk, p := benchOp(i)
		evs = append(evs, f.event(esk, string(p), ""))
	}
	b.ReportAllocs()
	b.ResetTimer()
	st := newState()
	for _, d := range []string{"users:lww", "hits:counter", "tags:orset"} {
		name, typ, _ := strings.Cut(d, ":")
		st.apply(f.event("kv._config", `{"op":"set","key":"`+name+`","value":{"crdt":"`+typ+`"}}`, ""))
	}
	for i := range b.N {
		ev := evs[i%len(evs)]
		ev.pos.Seq += uint64(i / len(evs) * len(evs))
		ev.pos.Index += uint64(i / len(evs) * len(evs))
		st.apply(ev)
	}
}
