package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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
	Pending uint64 // messages of the request's subject after this one (batch requests)
	Stream  string // the stream that answered: the one asked, or a mirror of it (Nats-Stream)
}

// Headers the server adds to direct get replies; they are not part of the
// stored event.
var directHeaders = []string{"Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Num-Pending", "Nats-Last-Sequence"}

// errNoResponders is the error of a direct get no server took.
var errNoResponders = fmt.Errorf("%w: direct get: no responders", ErrUnavailable)

// directGetter multiplexes JetStream direct get requests, including batched
// ones that answer with many messages and an end-of-batch marker, over one
// wildcard inbox subscription. It counts what it reads, for tests and
// metrics that check what a path costs.
type directGetter struct {
	nc      *nats.Conn
	subject string
	prefix  string
	sub     *nats.Subscription

	mu      sync.Mutex
	next    uint64
	pending map[string]chan *nats.Msg

	requests atomic.Uint64 // direct get requests sent
	messages atomic.Uint64 // messages received in replies

	denied *denials // when set, reads the server refuses end at once with ErrForbidden
}

type directGetRequest struct {
	Seq       uint64   `json:"seq,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	LastFor   string   `json:"last_by_subj,omitempty"`
	Batch     int      `json:"batch,omitempty"`
	MaxBytes  int      `json:"max_bytes,omitempty"`
	NoHeaders bool     `json:"no_hdr,omitempty"`
}

// directReply is the answer to one direct get request.
type directReply struct {
	msgs     []storedMsg // the messages (empty for NoHeaders requests)
	count    int         // how many messages came
	end      bool        // a batch ended with nothing more matching
	notFound bool        // the server answered 404
	lastSeq  uint64      // a batch's last sequence, from its end marker
	server   string      // which server answered, for traced requests ("" when unknown)
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

// call is one request in flight.
type call struct {
	req     directGetRequest
	reply   string
	ch      chan *nats.Msg
	traceCh chan *nats.Msg // trace events, for traced calls
}

// start sends req and returns the call to collect. With trace set the
// request carries a Nats-Trace-Dest header, and the server the client is
// connected to reports which server it handed the request to.
func (g *directGetter) start(req directGetRequest, trace bool) (*call, error) {
	return g.startOn(g.subject, req, trace)
}

// startOn is start for the stream whose direct get subject is subject.
func (g *directGetter) startOn(subject string, req directGetRequest, trace bool) (*call, error) {
	body, _ := json.Marshal(req)
	g.mu.Lock()
	g.next++
	id := strconv.FormatUint(g.next, 36)
	c := &call{req: req, reply: g.prefix + id, ch: make(chan *nats.Msg, req.Batch+2)}
	g.pending[c.reply] = c.ch
	if trace {
		c.traceCh = make(chan *nats.Msg, 4)
		g.pending[g.prefix+"t"+id] = c.traceCh
	}
	g.mu.Unlock()
	m := &nats.Msg{Subject: subject, Reply: c.reply, Data: body}
	if trace {
		m.Header = nats.Header{"Nats-Trace-Dest": []string{g.prefix + "t" + id}}
	}
	g.requests.Add(1)
	if err := g.nc.PublishMsg(m); err != nil {
		g.release(c)
		return nil, fmt.Errorf("%w: direct get: %v", ErrUnavailable, err)
	}
	return c, nil
}

func (g *directGetter) release(c *call) {
	g.mu.Lock()
	delete(g.pending, c.reply)
	if c.traceCh != nil {
		delete(g.pending, g.prefix+"t"+c.reply[len(g.prefix):])
	}
	g.mu.Unlock()
}

// collect waits for the call's reply (and, if traced, for the trace event
// that names the server that answered, up to traceWait after the reply)
// and releases the call. A batch ends with a marker that tells whether
// more messages match and the sequence of the last one sent; with
// NoHeaders the messages carry only payloads and are just counted.
func (g *directGetter) collect(ctx context.Context, c *call, traceWait time.Duration) (directReply, error) {
	defer g.release(c)
	rep, err := g.reply(ctx, c)
	if err != nil || c.traceCh == nil {
		return rep, err
	}
	timer := time.NewTimer(traceWait)
	defer timer.Stop()
	for {
		select {
		case m := <-c.traceCh:
			if server, first := answeredBy(m.Data); first {
				rep.server = server
				return rep, nil
			}
		case <-timer.C:
			return rep, nil // no trace: the server does not trace, or it was lost
		case <-ctx.Done():
			return rep, nil
		}
	}
}

func (g *directGetter) reply(ctx context.Context, c *call) (directReply, error) {
	var rep directReply
	for {
		var m *nats.Msg
		select {
		case m = <-c.ch:
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
			return directReply{}, errNoResponders
		default:
			return directReply{}, fmt.Errorf("transport: direct get answered %s %s", status, m.Header.Get("Description"))
		}
		rep.count++
		g.messages.Add(1)
		if !c.req.NoHeaders {
			sm, err := parseStored(m)
			if err != nil {
				return directReply{}, err
			}
			rep.msgs = append(rep.msgs, sm)
		}
		if c.req.Batch == 0 {
			return rep, nil
		}
	}
}

// do sends req and collects the reply.
func (g *directGetter) do(ctx context.Context, req directGetRequest) (directReply, error) {
	return g.doOn(ctx, g.subject, req)
}

// doOn is do for the stream whose direct get subject is subject.
func (g *directGetter) doOn(ctx context.Context, subject string, req directGetRequest) (directReply, error) {
	if g.denied != nil {
		var release func()
		ctx, release = g.denied.guard(ctx, "", subject)
		defer release()
	}
	c, err := g.startOn(subject, req, false)
	if err != nil {
		return directReply{}, err
	}
	rep, err := g.collect(ctx, c, 0)
	if ferr := forbidden(ctx); ferr != nil {
		return directReply{}, ferr
	}
	return rep, err
}

// pipeline sends reqs back to back and collects their replies in order.
// The server the client is connected to takes them in that order, and
// every server handles the requests it is given in the order it gets
// them, so the replies of one server describe its store at increasing
// times. With trace set each reply names the server that answered.
func (g *directGetter) pipeline(ctx context.Context, reqs []directGetRequest, trace bool) ([]directReply, error) {
	calls := make([]*call, 0, len(reqs))
	defer func() {
		for _, c := range calls {
			g.release(c)
		}
	}()
	for _, r := range reqs {
		c, err := g.start(r, trace)
		if err != nil {
			return nil, err
		}
		calls = append(calls, c)
	}
	out := make([]directReply, len(calls))
	for i, c := range calls {
		rep, err := g.collect(ctx, c, traceWait)
		if err != nil {
			return nil, err
		}
		out[i] = rep
	}
	calls = calls[:0]
	return out, nil
}

// traceWait is how long a traced request waits, after its reply, for the
// trace event naming the server that answered.
const traceWait = 2 * time.Second

// answeredBy reads a message trace event. It reports whether the event is
// the first hop's (from the server the client is connected to), and then
// which server the request went to: the route it was forwarded on, or the
// server itself when it was delivered locally (internal subscriptions,
// such as a stream's, appear as no egress). A request handed to a gateway,
// a leaf node or a client subscriber answers "".
func answeredBy(data []byte) (server string, first bool) {
	var ev struct {
		Server struct {
			Name string `json:"name"`
		} `json:"server"`
		Request struct {
			Header map[string][]string `json:"header"`
		} `json:"request"`
		Events []struct {
			Type string `json:"type"`
			Kind int    `json:"kind"`
			Name string `json:"name"`
		} `json:"events"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return "", false
	}
	if _, hop := ev.Request.Header["Nats-Trace-Hop"]; hop {
		return "", false
	}
	const (
		kindClient = 0
		kindRouter = 1
	)
	server = ev.Server.Name
	for _, e := range ev.Events {
		if e.Type != "eg" {
			continue
		}
		switch e.Kind {
		case kindRouter:
			return e.Name, true
		case kindClient, 2, 4: // a subscriber, a gateway or a leaf node: not a replica we can name
			return "", true
		}
	}
	return server, true
}

func parseStored(m *nats.Msg) (storedMsg, error) {
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return storedMsg{}, fmt.Errorf("transport: direct get reply without a sequence: %v", err)
	}
	ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
	np, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
	sm := storedMsg{Subject: m.Header.Get("Nats-Subject"), Seq: seq, Time: ts, Data: m.Data, Pending: np, Stream: m.Header.Get("Nats-Stream")}
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

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
