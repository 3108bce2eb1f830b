package board_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transform/board"
	"github.com/detbus/detbus/transport"
)

// BenchmarkPoll: what a poll of the board costs with three DETs of three
// instances each and nothing new to read (the steady state between
// snapshots and rejections), beside its floor, the status board's List,
// and a raw read of one status from its bucket.
func BenchmarkPoll(b *testing.B) {
	ctx := context.Background()
	s := testnats.Node(b)
	l := testnats.Log(b, s.ClientURL(), transport.Config{})
	sb, err := transform.OpenStatusBoard(ctx, l)
	if err != nil {
		b.Fatal(err)
	}
	for d := range 3 {
		for i := range 3 {
			st := transform.Status{Stream: transport.DefaultStream, Name: fmt.Sprint("det", d), Generation: 1, Output: fmt.Sprint("det", d, ".out"),
				Instance: fmt.Sprint("i", i), Outputs: 100, Won: 30}
			if err := sb.Publish(ctx, st); err != nil {
				b.Fatal(err)
			}
		}
	}
	bd, err := board.New(l, board.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := bd.Poll(ctx); err != nil { // reads the snapshots and rejections once
		b.Fatal(err)
	}
	bucket, err := l.BindBucket(ctx, transform.DefaultStatusBucket)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw get", func(b *testing.B) {
		for b.Loop() {
			if _, err := bucket.Get(ctx, transport.DefaultStream+".det0.i0"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("status list", func(b *testing.B) {
		for b.Loop() {
			if _, err := sb.List(ctx, transport.DefaultStream); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("poll", func(b *testing.B) {
		for b.Loop() {
			if err := bd.Poll(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	if o := bd.Overview(); len(o.Transforms) != 3 || len(o.Transforms[0].Instances) != 3 {
		b.Fatalf("the board holds %+v", o)
	}
}
