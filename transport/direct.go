package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// storedMsg is one message as a direct get returns it.
type storedMsg struct {
	Subject string
	Seq     uint64
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// Headers the server adds to direct get replies; they are not part of the
// stored event.
var directHeaders = []string{"Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Num-Pending", "Nats-Last-Sequence"}

// directGetter multiplexes JetStream direct get requests, including batched
// ones that answer with many messages and an end-of-batch marker, over one
// wildcard inbox subscription.
type directGetter struct {
	nc      *nats.Conn
	subject string
	prefix  string
	sub     *nats.Subscription

	mu      sync.Mutex
	next    uint64
	pending map[string]chan *nats.Msg
}

type directGetRequest struct {
	Seq       uint64 `json:"seq,omitempty"`
	NextFor   string `json:"next_by_subj,omitempty"`
	LastFor   string `json:"last_by_subj,omitempty"`
	Batch     int    `json:"batch,omitempty"`
	MaxBytes  int    `json:"max_bytes,omitempty"`
	NoHeaders bool   `json:"no_hdr,omitempty"`
}

// directReply is the answer to one direct get request.
type directReply struct {
	msgs     []storedMsg // the messages (empty for NoHeaders requests)
	count    int         // how many messages came
	end      bool        // a batch ended with nothing more matching
	notFound bool        // the server answered 404
	lastSeq  uint64      // a batch's last sequence, from its end marker
}

func newDirectGetter(nc *nats.Conn, stream string) (*directGetter, error) {
	g := &directGetter{
		nc:      nc,
		subject: "$JS.API.DIRECT.GET." + stream,
		prefix:  nc.NewRespInbox() + ".",
		pending: map[string]chan *nats.Msg{},
	}
	sub, err := nc.Subscribe(g.prefix+"*", g.route)
	if err != nil {
		return nil, fmt.Errorf("%w: subscribe for direct gets: %v", ErrUnavailable, err)
	}
	g.sub = sub
	return g, nil
}

func (g *directGetter) route(m *nats.Msg) {
	g.mu.Lock()
	ch := g.pending[m.Subject]
	g.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default: // a reply we cannot hold: the request will time out and retry
		}
	}
}

func (g *directGetter) close() { _ = g.sub.Unsubscribe() }

// do sends req and collects the reply. A batch ends with a marker that
// tells whether more messages match and the sequence of the last one sent;
// with NoHeaders the messages carry only payloads and are just counted.
func (g *directGetter) do(ctx context.Context, req directGetRequest) (directReply, error) {
	body, _ := json.Marshal(req)
	g.mu.Lock()
	g.next++
	reply := g.prefix + strconv.FormatUint(g.next, 36)
	ch := make(chan *nats.Msg, req.Batch+2)
	g.pending[reply] = ch
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.pending, reply)
		g.mu.Unlock()
	}()
	if err := g.nc.PublishRequest(g.subject, reply, body); err != nil {
		return directReply{}, fmt.Errorf("%w: direct get: %v", ErrUnavailable, err)
	}
	var rep directReply
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return directReply{}, fmt.Errorf("%w: direct get: %v", ErrUnavailable, ctx.Err())
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of batch
			np, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			rep.lastSeq, _ = strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64)
			rep.end = np == 0
			return rep, nil
		case "404":
			rep.end, rep.notFound = true, true
			return rep, nil
		case "503":
			return directReply{}, fmt.Errorf("%w: direct get: no responders", ErrUnavailable)
		default:
			return directReply{}, fmt.Errorf("transport: direct get answered %s %s", status, m.Header.Get("Description"))
		}
		rep.count++
		if !req.NoHeaders {
			sm, err := parseStored(m)
			if err != nil {
				return directReply{}, err
			}
			rep.msgs = append(rep.msgs, sm)
		}
		if req.Batch == 0 {
			return rep, nil
		}
	}
}

func parseStored(m *nats.Msg) (storedMsg, error) {
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return storedMsg{}, fmt.Errorf("transport: direct get reply without a sequence: %v", err)
	}
	ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
	sm := storedMsg{Subject: m.Header.Get("Nats-Subject"), Seq: seq, Time: ts, Data: m.Data}
	for _, h := range directHeaders {
		m.Header.Del(h)
	}
	if len(m.Header) > 0 {
		sm.Header = m.Header
	}
	return sm, nil
}

// bySeq fetches the message at stream sequence seq, which the caller knows
// to be stored: a replica that answers "not found" is behind, and is asked
// again until ctx ends.
func (g *directGetter) bySeq(ctx context.Context, seq uint64) (storedMsg, error) {
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		rep, err := g.do(ctx, directGetRequest{Seq: seq})
		if err != nil {
			return storedMsg{}, err
		}
		if !rep.notFound && len(rep.msgs) > 0 {
			return rep.msgs[0], nil
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return storedMsg{}, fmt.Errorf("%w: stream sequence %d not served: %v", ErrUnavailable, seq, err)
		}
	}
}
