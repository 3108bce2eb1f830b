package transport_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestEventsTotalOrderAndFrom(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	var positions []transport.Position
	for i := range 30 {
		esk := []string{"shop.eu", "shop.us", "bank.x"}[i%3]
		pos, err := l.Write(ctx, esk, []byte(fmt.Sprintf(`{"i":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		positions = append(positions, pos)
	}
	var got []transport.Position
	for ev, err := range l.Events(ctx, []string{"shop.*"}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Position())
	}
	var want []transport.Position
	for _, p := range positions {
		if p.ESK != "bank.x" {
			want = append(want, p)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("shop.* events\n got %v\nwant %v", got, want)
	}
	// From a mid-stream position, indices stay the ESK's own positions.
	from := positions[13].Seq
	got = nil
	for ev, err := range l.Events(ctx, nil, transport.ReadOptions{From: from}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Position())
	}
	if fmt.Sprint(got) != fmt.Sprint(positions[13:]) {
		t.Fatalf("events from %d\n got %v\nwant %v", from, got, positions[13:])
	}
	// Nothing matching ends at once.
	for _, err := range l.Events(ctx, []string{"none.>"}, transport.ReadOptions{}) {
		t.Fatalf("unexpected item, err %v", err)
	}
	// A bad pattern is an error.
	for _, err := range l.Events(ctx, []string{"a..b"}, transport.ReadOptions{}) {
		if err == nil {
			t.Fatal("bad pattern accepted")
		}
	}
}

func TestEventsFollow(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
	defer cancel()
	if _, err := l.Write(ctx, "f.a", []byte(`0`)); err != nil {
		t.Fatal(err)
	}
	got := make(chan transport.Event)
	go func() {
		defer close(got)
		for ev, err := range l.Events(ctx, []string{"f.a"}, transport.ReadOptions{Follow: true}) {
			if err != nil {
				t.Error(err)
				return
			}
			got <- ev
		}
	}()
	if ev := <-got; ev.Index != 0 {
		t.Fatalf("first followed event at %d", ev.Index)
	}
	writer := testnats.Log(t, s.ClientURL(), transport.Config{})
	for i := 1; i <= 3; i++ {
		if _, err := writer.Write(ctx, "f.a", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		ev := <-got
		if ev.Index != uint64(i) || string(ev.Data) != fmt.Sprint(i) {
			t.Fatalf("followed event %d: %+v", i, ev)
		}
	}
	cancel()
	for range got { // the iterator ends when ctx is done
	}
}

func TestTraceContextPropagates(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{Tracer: tp.Tracer("test"), Propagator: propagation.TraceContext{}})
	ctx := ctxT(t)
	pctx, parent := tp.Tracer("test").Start(ctx, "request")
	if _, err := l.Write(pctx, "tr.a", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ExistsOrWrite(pctx, "tr.a", 1, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	parent.End()
	for ev, err := range l.Events(ctx, []string{"tr.a"}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if sc := ev.SpanContext(); sc.TraceID() != parent.SpanContext().TraceID() {
			t.Fatalf("event %d carries trace %v, want %v", ev.Index, sc.TraceID(), parent.SpanContext().TraceID())
		}
	}
	names := map[string]int{}
	for _, sp := range rec.Ended() {
		if sp.SpanContext().TraceID() == parent.SpanContext().TraceID() {
			names[sp.Name()]++
		}
	}
	if names["detbus.write"] != 1 || names["detbus.exists_or_write"] != 1 || names["detbus.receive"] != 2 {
		t.Fatalf("spans in the request's trace: %v", names)
	}
}
