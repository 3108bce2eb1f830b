package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
)

// How indices are learned, with a cost that does not grow with history.
//
// The tail. The stream leader counts a subject's messages (stream info
// with a subject filter) and returns its last message (the JetStream API's
// message get, which only the leader answers). Asked one after the other,
// count, last message, count: when the two counts agree, no message of the
// subject landed in between, so the last message's index is the count
// minus one. Three round trips, none of which reads more than the last
// message.
//
// Any other position. A batched direct get stamps its reply with how many
// messages of the subject follow the returned one on the answering server
// (Nats-Num-Pending), computed under the stream's read lock. For two
// messages a and m of one subject on one server at one instant,
// index(m) - index(a) = pending(a) - pending(m). A known fact (index, seq)
// serves as a: its reading, then m's, then its reading again, pipelined on
// one connection, are handled by one server in that order; when the two
// readings of a agree, nothing of the subject landed in between and the
// difference is exact. On a replicated stream, direct gets are answered by
// any replica, so each request is traced (Nats-Trace-Dest) and only
// readings answered by the same server are paired. A search for an index
// probes interpolated positions this way, then walks the last stretch.

// leaderTail returns the count of esk's events and its last event, as the
// stream leader holds them, and records the tail as a fact.
func (l *Log) leaderTail(ctx context.Context, e *eskFacts) (uint64, storedMsg, error) {
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		c1, leader1, err := l.leaderCount(ctx, e.subject)
		if err != nil {
			return 0, storedMsg{}, err
		}
		last, found, err := l.leaderLast(ctx, e.subject)
		if err != nil {
			return 0, storedMsg{}, err
		}
		c2, leader2, err := l.leaderCount(ctx, e.subject)
		if err != nil {
			return 0, storedMsg{}, err
		}
		if c1 == c2 && leader1 == leader2 && found == (c1 > 0) {
			if found {
				e.add(fact{c1 - 1, last.Seq})
			}
			return c1, last, nil
		}
		// A write landed in between: ask again.
		if err := sleepCtx(ctx, backoff); err != nil {
			return 0, storedMsg{}, fmt.Errorf("%w: the tail of %s kept moving: %v", ErrUnavailable, e.subject, err)
		}
	}
}

// leaderCount returns the number of messages on subject, from a confirmed
// stream leader, and the leader's name.
func (l *Log) leaderCount(ctx context.Context, subject string) (uint64, string, error) {
	info, err := l.info(ctx, subject)
	if err != nil {
		return 0, "", err
	}
	leader := ""
	if info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	return info.State.Subjects[subject], leader, nil
}

// leaderLast returns the last message on subject (wildcards allowed) as
// the stream leader holds it, with found false when there is none.
func (l *Log) leaderLast(ctx context.Context, subject string) (storedMsg, bool, error) {
	req, _ := json.Marshal(struct {
		LastBySubject string `json:"last_by_subj"`
	}{subject})
	msg, err := l.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+l.cfg.Stream, req)
	if err != nil {
		return storedMsg{}, false, fmt.Errorf("%w: last message on %s: %v", ErrUnavailable, subject, err)
	}
	var resp struct {
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return storedMsg{}, false, fmt.Errorf("%w: last message on %s: %v", ErrUnavailable, subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return storedMsg{}, false, nil
	case resp.Error != nil:
		return storedMsg{}, false, fmt.Errorf("%w: last message on %s: %s (%d)", ErrUnavailable, subject, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return storedMsg{}, false, fmt.Errorf("%w: last message on %s: empty reply", ErrUnavailable, subject)
	}
	m := resp.Message
	sm := storedMsg{Subject: m.Subject, Seq: m.Seq, Time: m.Time.UTC(), Data: m.Data}
	if len(m.Header) > 0 {
		h, err := decodeHeaders(m.Header)
		if err != nil {
			return storedMsg{}, false, fmt.Errorf("transport: last message on %s: %w", subject, err)
		}
		sm.Header = h
	}
	return sm, true, nil
}

// decodeHeaders parses a NATS header block ("NATS/1.0\r\nK: V\r\n\r\n").
func decodeHeaders(b []byte) (nats.Header, error) {
	hdr := make(nats.Header)
	lines := splitLines(b)
	if len(lines) == 0 || len(lines[0]) < 8 || string(lines[0][:8]) != "NATS/1.0" {
		return nil, errors.New("malformed header block")
	}
	for _, ln := range lines[1:] {
		if len(ln) == 0 {
			continue
		}
		i := indexByte(ln, ':')
		if i <= 0 {
			return nil, fmt.Errorf("malformed header line %q", ln)
		}
		k := string(ln[:i])
		v := string(trimSpace(ln[i+1:]))
		hdr[k] = append(hdr[k], v)
	}
	return hdr, nil
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := indexByte(b, '\n')
		if i < 0 {
			out = append(out, trimCR(b))
			break
		}
		out = append(out, trimCR(b[:i]))
		b = b[i+1:]
	}
	return out
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// probe is the answer for one position: the first message of the subject
// at or after it, and that message's index.
type probe struct {
	at    uint64 // the position asked about
	ok    bool   // the reading was paired and is exact
	none  bool   // no message of the subject at or after at (when ok)
	msg   storedMsg
	index uint64
}

// anchorReadings is how many readings of the anchor a round makes on each
// side of its probes: one when a single server answers direct gets, more
// on a replicated stream, where each reading goes to a random replica and
// a probe is paired only with readings by its own server.
func (l *Log) anchorReadings() int {
	if l.replicated() {
		return 3
	}
	return 1
}

// round reads the positions ats of e's subject against the known fact a,
// in one pipeline: the readings of a, the probes, the readings of a. It
// returns a probe per position; those not paired (ok false) are asked
// again by the caller.
func (l *Log) round(ctx context.Context, e *eskFacts, a fact, ats []uint64) ([]probe, error) {
	n := l.anchorReadings()
	reqs := make([]directGetRequest, 0, len(ats)+2*n)
	anchorReq := directGetRequest{Seq: a.seq, NextFor: e.subject, Batch: 1}
	for range n {
		reqs = append(reqs, anchorReq)
	}
	for _, at := range ats {
		reqs = append(reqs, directGetRequest{Seq: at, NextFor: e.subject, Batch: 1})
	}
	for range n {
		reqs = append(reqs, anchorReq)
	}
	traced := l.replicated() && !l.noTrace.Load()
	reps, err := l.gets.pipeline(ctx, reqs, traced)
	if err != nil {
		return nil, err
	}
	if traced {
		named := false
		for _, r := range reps {
			named = named || r.server != ""
		}
		if !named {
			l.noTrace.Store(true) // the server does not trace: readings cannot be paired
			return nil, errNoTrace
		}
	}
	// An anchor reading is usable when it returned the anchor itself: the
	// answering server holds it, and its pending count is as of then.
	type reading struct {
		server  string
		pending uint64
		ok      bool
	}
	anchors := make([]reading, len(reps))
	for i, r := range reps {
		if i >= n && i < n+len(ats) {
			continue
		}
		if len(r.msgs) == 1 && r.msgs[0].Seq == a.seq {
			anchors[i] = reading{server: r.server, pending: r.msgs[0].Pending, ok: !traced || r.server != ""}
		}
	}
	out := make([]probe, len(ats))
	for j, at := range ats {
		out[j].at = at
		i := n + j
		r := reps[i]
		if traced && r.server == "" {
			continue
		}
		var before, after *reading
		for k := i - 1; k >= 0; k-- {
			if anchors[k].ok && anchors[k].server == r.server {
				before = &anchors[k]
				break
			}
		}
		for k := i + 1; k < len(reps); k++ {
			if anchors[k].ok && anchors[k].server == r.server {
				after = &anchors[k]
				break
			}
		}
		if before == nil || after == nil || before.pending != after.pending {
			continue
		}
		switch {
		case r.notFound && at > a.seq:
			out[j].ok, out[j].none = true, true
		case len(r.msgs) == 1:
			m := r.msgs[0]
			// index(m) - index(a) = pending(a) - pending(m)
			idx := int64(a.index) + int64(before.pending) - int64(m.Pending)
			if idx < 0 || (m.Seq == a.seq) != (idx == int64(a.index)) {
				continue // not a consistent reading
			}
			out[j] = probe{at: at, ok: true, msg: m, index: uint64(idx)}
			e.add(fact{uint64(idx), m.Seq})
		}
	}
	return out, nil
}

var errNoTrace = errors.New("transport: the server does not trace direct gets")

// replicated reports whether the stream has more than one replica, so
// that direct gets can be answered by different servers.
func (l *Log) replicated() bool { return l.replicas.Load() > 1 }

// walk reads up to n messages of e's subject after fact f without their
// headers and returns the fact of the last one read (f itself when none
// came): the end-of-batch marker carries its sequence.
func (l *Log) walk(ctx context.Context, e *eskFacts, f fact, n int) (fact, error) {
	rep, err := l.gets.do(ctx, directGetRequest{Seq: f.seq + 1, NextFor: e.subject, Batch: n, MaxBytes: walkMaxBytes, NoHeaders: true})
	if err != nil {
		return f, err
	}
	if rep.count == 0 || rep.lastSeq <= f.seq {
		return f, nil
	}
	g := fact{f.index + uint64(rep.count), rep.lastSeq}
	e.add(g)
	return g, nil
}

const (
	walkBatch    = 1000
	walkMaxBytes = 8 << 20
)

// anchor returns a fact to read positions against: the known fact nearest
// to seq, or the leader's tail.
func (l *Log) anchor(ctx context.Context, e *eskFacts, seq uint64) (fact, bool, error) {
	e.mu.Lock()
	var best fact
	ok := false
	for _, f := range e.facts {
		if !ok || absDiff(f.seq, seq) < absDiff(best.seq, seq) {
			best, ok = f, true
		}
	}
	e.mu.Unlock()
	if ok {
		return best, true, nil
	}
	n, last, err := l.leaderTail(ctx, e)
	if err != nil || n == 0 {
		return fact{}, false, err
	}
	return fact{n - 1, last.Seq}, true, nil
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// indexOf returns the index of the event stored at seq on esk's subject.
// A fact answers at once; a writer's own next event is confirmed with one
// headerless read; anything else is one round against the nearest fact.
func (l *Log) indexOf(ctx context.Context, e *eskFacts, seq uint64) (uint64, error) {
	if i, ok := e.indexOf(seq); ok {
		return i, nil
	}
	if f, ok := e.below(seq); ok {
		// The writer's own next event, most often: one headerless read.
		if g, err := l.walk(ctx, e, f, 1); err == nil && g.seq == seq {
			return g.index, nil
		}
	}
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		a, ok, err := l.anchor(ctx, e, seq)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fmt.Errorf("transport: stream sequence %d is not on %s: it holds no event", seq, e.subject)
		}
		if a.seq == seq {
			return a.index, nil
		}
		ps, err := l.round(ctx, e, a, []uint64{seq})
		if errors.Is(err, errNoTrace) {
			return l.indexByWalking(ctx, e, seq)
		}
		if err != nil {
			return 0, err
		}
		// "Nothing at or after seq" only says that the replica that answered
		// does not have seq yet; a later message in its place says that seq
		// is not an event of this ESK, since every replica holds a prefix of
		// the log.
		if p := ps[0]; p.ok && !p.none {
			if p.msg.Seq != seq {
				return 0, fmt.Errorf("transport: stream sequence %d is not on %s", seq, e.subject)
			}
			return p.index, nil
		} else if p.ok {
			info, err := l.info(ctx, "")
			if err != nil {
				return 0, err
			}
			if seq > info.State.LastSeq {
				return 0, fmt.Errorf("transport: stream sequence %d is not on %s: the log ends at %d", seq, e.subject, info.State.LastSeq)
			}
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return 0, fmt.Errorf("%w: index of sequence %d on %s: %v", ErrUnavailable, seq, e.subject, err)
		}
	}
}

// indexByWalking finds the index of seq by walking from the nearest fact
// below it, or from the start: the way for servers that cannot trace
// direct gets on a replicated stream.
func (l *Log) indexByWalking(ctx context.Context, e *eskFacts, seq uint64) (uint64, error) {
	from := fact{index: math.MaxUint64} // before index 0
	e.mu.Lock()
	for _, f := range e.facts {
		if f.seq <= seq {
			from = f
		}
	}
	e.mu.Unlock()
	if from.seq == seq && from.index != math.MaxUint64 {
		return from.index, nil
	}
	for backoff := time.Millisecond; ; {
		rep, err := l.gets.do(ctx, directGetRequest{Seq: from.seq + 1, NextFor: e.subject, Batch: walkBatch, MaxBytes: walkMaxBytes})
		if err != nil {
			return 0, err
		}
		for _, m := range rep.msgs {
			from = fact{from.index + 1, m.Seq}
			if m.Seq == seq {
				e.add(from)
				return from.index, nil
			}
			if m.Seq > seq {
				return 0, fmt.Errorf("transport: stream sequence %d is not on %s", seq, e.subject)
			}
		}
		if len(rep.msgs) == 0 || rep.end {
			if err := sleepCtx(ctx, backoff); err != nil { // a replica behind
				return 0, fmt.Errorf("%w: index of sequence %d on %s: %v", ErrUnavailable, seq, e.subject, err)
			}
			backoff = min(2*backoff, 50*time.Millisecond)
		}
	}
}

// located is where an index was found.
type located struct {
	seq   uint64
	msg   *storedMsg // the message itself, when the search read it
	count uint64     // the ESK's count, when the index was not found
}

// seqOf finds the stream sequence of index i of e's subject. found is
// false when the ESK has no index i, as the stream leader counts it.
func (l *Log) seqOf(ctx context.Context, e *eskFacts, i uint64) (located, bool, error) {
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		loc, found, err := l.search(ctx, e, i)
		if !errors.Is(err, errRetry) {
			return loc, found, err
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return located{}, false, fmt.Errorf("%w: index %d of %s: %v", ErrUnavailable, i, e.subject, err)
		}
	}
}

var errRetry = errors.New("transport: retry")

func (l *Log) search(ctx context.Context, e *eskFacts, i uint64) (located, bool, error) {
	if s, ok := e.seqOf(i); ok {
		return located{seq: s}, true, nil
	}
	lo, loOK, hi, hiOK := e.around(i)
	if !hiOK {
		n, last, err := l.leaderTail(ctx, e)
		if err != nil {
			return located{}, false, err
		}
		if i >= n {
			return located{count: n}, false, nil
		}
		if i == n-1 {
			return located{seq: last.Seq, msg: &last}, true, nil
		}
		hi = fact{n - 1, last.Seq}
	}
	// lo before index 0 is the virtual fact (-1, 0).
	if !loOK {
		lo = fact{index: math.MaxUint64, seq: 0}
	}
	next := func(f fact) uint64 { return f.index + 1 } // wraps -1 to 0
	for round := 0; ; {
		gap := hi.index - next(lo) // indices strictly between lo and hi, plus one
		if gap <= walkBatch {
			// Walk the last stretch from lo.
			want := int(i - next(lo) + 1)
			g, err := l.walk(ctx, e, lo, want)
			if err != nil {
				return located{}, false, err
			}
			if g == lo {
				return located{}, false, errRetry // a replica behind
			}
			if g.index == i {
				return located{seq: g.seq}, true, nil
			}
			lo = g // the batch hit its byte bound: go on from there
			continue
		}
		ats := probePositions(lo, hi, i, round)
		round++
		a := hi
		ps, err := l.round(ctx, e, a, ats)
		if errors.Is(err, errNoTrace) {
			// No pairing possible: walk all the way.
			for {
				g, err := l.walk(ctx, e, lo, int(min(i-next(lo)+1, walkBatch)))
				if err != nil {
					return located{}, false, err
				}
				if g == lo {
					return located{}, false, errRetry
				}
				if g.index == i {
					return located{seq: g.seq}, true, nil
				}
				lo = g
			}
		}
		if err != nil {
			return located{}, false, err
		}
		progress := false
		for _, p := range ps {
			if !p.ok || p.none {
				continue
			}
			switch {
			case p.index == i:
				m := p.msg
				return located{seq: m.Seq, msg: &m}, true, nil
			case p.index < i && (lo.index == math.MaxUint64 || p.index > lo.index):
				lo, progress = fact{p.index, p.msg.Seq}, true
			case p.index > i && p.index < hi.index:
				hi, progress = fact{p.index, p.msg.Seq}, true
			}
		}
		if !progress {
			return located{}, false, errRetry
		}
	}
}

// probePositions picks stream positions strictly after lo and at most
// hi's to probe for index i. The first round probes only the interpolated
// estimate, which on a subject spread evenly through the stream lands on
// or next to i; later rounds add the midpoint, so that a round at least
// halves the interval where interpolation misses. Each probe costs the
// server a count over the stream's blocks, so a round asks few.
func probePositions(lo, hi fact, i uint64, round int) []uint64 {
	loIdx := float64(-1)
	if lo.index != math.MaxUint64 {
		loIdx = float64(lo.index)
	}
	span := float64(hi.seq - lo.seq)
	frac := (float64(i) - loIdx) / (float64(hi.index) - loIdx)
	pts := []float64{float64(lo.seq) + span*frac}
	if round > 0 {
		pts = append(pts, float64(lo.seq)+span/2)
	}
	out := make([]uint64, 0, len(pts))
	for _, p := range pts {
		s := uint64(p)
		s = max(s, lo.seq+1)
		s = min(s, hi.seq)
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// confirmRun learns the indices of seqs, acknowledged writes to e's
// subject in increasing order, with one request that returns no headers:
// from the known fact f just before seqs[0], it asks for the next
// len(seqs) messages and checks that the last of them is the last of
// seqs. Then those messages are exactly seqs, since all of seqs lie in
// that range. It reports false, learning nothing, when another message is
// interleaved, the answering replica is behind, or no fact lies before
// the run; the caller then asks [Log.indexOf].
func (l *Log) confirmRun(ctx context.Context, e *eskFacts, seqs []uint64, maxBytes int) (first uint64, ok bool, err error) {
	if len(seqs) == 0 {
		return 0, false, nil
	}
	for k := 1; k < len(seqs); k++ {
		if seqs[k] <= seqs[k-1] {
			return 0, false, nil
		}
	}
	f, known := e.below(seqs[0])
	if !known {
		return 0, false, nil
	}
	rep, err := l.gets.do(ctx, directGetRequest{Seq: f.seq + 1, NextFor: e.subject, Batch: len(seqs), MaxBytes: maxBytes, NoHeaders: true})
	if err != nil || rep.count != len(seqs) || rep.lastSeq != seqs[len(seqs)-1] {
		return 0, false, err
	}
	e.advance(f, fact{f.index + uint64(len(seqs)), seqs[len(seqs)-1]})
	return f.index + 1, true, nil
}

// ReadStats counts what a [Log] has read from the stream since it was
// opened: what a path costs, for tests and operators.
type ReadStats struct {
	DirectGets     uint64 // direct get requests sent
	DirectMsgs     uint64 // messages received in their replies
	Delivered      uint64 // events delivered by [Log.Events]
	ESKsRemembered int    // ESKs the log holds facts about (at most 4096)
}

// ReadStats returns what the log has read so far.
func (l *Log) ReadStats() ReadStats {
	return ReadStats{
		DirectGets: l.gets.requests.Load(), DirectMsgs: l.gets.messages.Load(),
		Delivered: l.delivered.Load(), ESKsRemembered: l.facts.len(),
	}
}
