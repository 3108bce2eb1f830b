package kv

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestProbeLatency(t *testing.T) {
	_, l := node(t)
	ctx := context.Background()
	var raw time.Duration
	for range 2000 {
		t0 := time.Now()
		l.JetStream().Publish(ctx, l.Subject("kv.users"), []byte(`{"op":"set","key":"a","value":1}`))
		raw += time.Since(t0)
	}
	t.Logf("publish, no consumer %v", raw/2000)
	s := open(t, l, Options{})
	s.CreateTable(ctx, "users", TypeLWW)
	for _, hdr := range []bool{false, true, false, true} {
		var pub, wait time.Duration
		n := 2000
		for range n {
			m := nats.NewMsg(l.Subject("kv.users"))
			m.Data = []byte(`{"op":"set","key":"a","value":1}`)
			if hdr {
				m.Header.Set("Detbus-Hlc", l.Config().Clock.Now().String())
			}
			t0 := time.Now()
			ack, err := l.JetStream().PublishMsg(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			t1 := time.Now()
			s.waitSeq(ctx, ack.Sequence)
			t2 := time.Now()
			pub += t1.Sub(t0)
			wait += t2.Sub(t1)
		}
		t.Logf("hdr %v publish %v, then wait %v", hdr, pub/time.Duration(n), wait/time.Duration(n))
	}
	var put time.Duration
	kv, _ := l.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"})
	for range 2000 {
		t0 := time.Now()
		kv.Put(ctx, "a", []byte(`{"op":"set","key":"a","value":1}`))
		put += time.Since(t0)
	}
	t.Logf("kv put %v", put/2000)
	var set time.Duration
	for range 2000 {
		t0 := time.Now()
		s.Set(ctx, "users", "a", 1)
		set += time.Since(t0)
	}
	t.Logf("Set %v", set/2000)
}
