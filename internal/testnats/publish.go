package testnats

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publish publishes n messages to the server at url, the i-th to the
// subject and with the payload msg(i) gives, as any JetStream client does:
// plain pipelined publishes, no headers, on a connection of its own, in
// the order of i. It waits for every acknowledgement, window by window,
// and returns the first error (a refused publish, ctx ending). It is the
// fast way to give a log a long history.
func Publish(ctx context.Context, url string, n int, msg func(i int) (subject string, payload []byte)) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	var mu sync.Mutex
	var failed error
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			mu.Lock()
			defer mu.Unlock()
			if failed == nil {
				failed = fmt.Errorf("publish to %s: %w", m.Subject, err)
			}
		}))
	if err != nil {
		return err
	}
	complete := func() error {
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		return failed
	}
	const window = 50_000
	for start := 0; start < n; start += window {
		for i := start; i < min(start+window, n); i++ {
			subject, payload := msg(i)
			for {
				_, err := js.PublishAsync(subject, payload)
				if err == nil {
					break
				}
				if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					return fmt.Errorf("publish %d to %s: %w", i, subject, err)
				}
				if err := complete(); err != nil { // the server is behind: let it catch up
					return err
				}
			}
		}
		if err := complete(); err != nil {
			return err
		}
	}
	return nil
}
