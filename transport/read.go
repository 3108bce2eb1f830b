package transport

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Count returns the number of events of esk, as the stream leader counts
// them (JetStream's per-subject state).
//
// Errors: [ErrInvalidESK], [ErrUnavailable].
func (l *Log) Count(ctx context.Context, esk string) (uint64, error) {
	if err := ValidateESK(esk); err != nil {
		return 0, err
	}
	counts, err := l.Counts(ctx, esk)
	if err != nil {
		return 0, err
	}
	return counts[esk], nil
}

// Counts returns the count of every ESK matching pattern (wildcards
// allowed; ">" for all), as the stream leader counts them.
//
// Errors: [ErrInvalidESK], [ErrUnavailable].
func (l *Log) Counts(ctx context.Context, pattern string) (map[string]uint64, error) {
	if err := ValidateESKPattern(pattern); err != nil {
		return nil, err
	}
	info, err := l.info(ctx, l.Subject(pattern))
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(info.State.Subjects))
	for subj, n := range info.State.Subjects {
		if esk, ok := l.ESKOf(subj); ok {
			out[esk] = n
		}
	}
	return out, nil
}

// info returns the stream's info as a confirmed stream leader reports it
// (see [confirmed]), asking again until one does or ctx ends.
func (l *Log) info(ctx context.Context, filter string) (*jetstream.StreamInfo, error) {
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	var opts []jetstream.StreamInfoOpt
	if filter != "" {
		opts = append(opts, jetstream.WithSubjectFilter(filter))
	}
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, 250*time.Millisecond) {
		info, err := l.stream.Info(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("%w: stream info %q: %v", ErrUnavailable, l.cfg.Stream, err)
		}
		l.replicas.Store(int64(info.Config.Replicas))
		why := confirmed(info.Cluster)
		if why == "" {
			return info, nil
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return nil, fmt.Errorf("%w: stream info %q: %s", ErrUnavailable, l.cfg.Stream, why)
		}
	}
}

// LeaderLease is how recently the stream leader answering a stream info
// request must have heard from a majority of the stream's replicas
// (itself included) for its counts to be trusted.
//
// Counts decide the negative answers (an index not found, an index
// ahead), so they must not come from a deposed leader: a node cut off
// from its peers keeps calling itself the leader, and answering reads
// from what it holds, until it learns of a newer term, up to 20s on
// NATS's defaults (and for a moment after a partition heals, until its
// routes are back). Followers elect a new leader only after hearing
// nothing from the old one for NATS's minimum election timeout of 4s, so
// a leader that heard from a majority within a shorter time is still
// the leader, except under an asymmetric partition, where a follower
// that still reaches the old leader can vote for a new one; the old
// leader learns of it at its next heartbeat (1s).
const LeaderLease = 3 * time.Second

// confirmed returns "" if ci comes from a stream leader that heard from
// a majority of its replicas within LeaderLease, or a single-replica
// stream, and otherwise says why not.
func confirmed(ci *jetstream.ClusterInfo) string {
	if ci == nil || len(ci.Replicas) == 0 {
		return ""
	}
	if ci.Leader == "" {
		return "the stream has no leader"
	}
	heard := 1 // the leader
	for _, p := range ci.Replicas {
		// Active is the time since the leader last heard from the
		// replica; 0 when it never did, or just now.
		if p.Active < LeaderLease && (p.Active > 0 || p.Current) && !p.Offline {
			heard++
		}
	}
	if n := len(ci.Replicas) + 1; 2*heard <= n {
		return fmt.Sprintf("stream leader %s heard from %d of %d replicas within %v", ci.Leader, heard, n, LeaderLease)
	}
	return ""
}

// State summarises the log.
type State struct {
	Stream   string
	Messages uint64 // events in the log
	Bytes    uint64
	FirstSeq uint64
	LastSeq  uint64
	LastTime time.Time
	Replicas int
	Leader   string            // cluster leader of the stream, if clustered
	Created  time.Time         // when the stream was created: tells a recreated stream apart
	ESKs     map[string]uint64 // count per ESK matching the filter
}

// SortedESKs lists the ESKs of s in lexical order.
func (s State) SortedESKs() []string {
	out := make([]string, 0, len(s.ESKs))
	for k := range s.ESKs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// State returns the stream's state and the counts of the ESKs matching
// pattern ("" for none, ">" for all).
func (l *Log) State(ctx context.Context, pattern string) (State, error) {
	filter := ""
	if pattern != "" {
		if err := ValidateESKPattern(pattern); err != nil {
			return State{}, err
		}
		filter = l.Subject(pattern)
	}
	info, err := l.info(ctx, filter)
	if err != nil {
		return State{}, err
	}
	st := State{
		Stream: info.Config.Name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
		FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, LastTime: info.State.LastTime,
		Replicas: info.Config.Replicas, ESKs: map[string]uint64{}, Created: info.Created.UTC(),
	}
	if info.Cluster != nil {
		st.Leader = info.Cluster.Leader
	}
	for subj, n := range info.State.Subjects {
		if esk, ok := l.ESKOf(subj); ok {
			st.ESKs[esk] = n
		}
	}
	return st, nil
}

// Get returns the event at index of esk. It costs a bounded number of
// round trips whatever the ESK's length: one or two for an index this Log
// knows or the last one, a few rounds of interpolated probes for any
// other (see the package documentation).
//
// Errors: [ErrInvalidESK]; [ErrNotFound] when index is not below the
// ESK's count, as the stream leader counts it; [ErrUnavailable].
func (l *Log) Get(ctx context.Context, esk string, index uint64) (Event, error) {
	if err := ValidateESK(esk); err != nil {
		return Event{}, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	e := l.esk(esk)
	loc, found, err := l.seqOf(ctx, e, index)
	if err != nil {
		return Event{}, err
	}
	if !found {
		return Event{}, fmt.Errorf("%w: ESK %q has %d events, no index %d", ErrNotFound, esk, loc.count, index)
	}
	sm := loc.msg
	if sm == nil {
		m, err := l.gets.bySeq(ctx, loc.seq)
		if err != nil {
			return Event{}, err
		}
		sm = &m
	}
	return toEvent(esk, index, sm.Seq, sm.Time, sm.Header, sm.Data), nil
}
