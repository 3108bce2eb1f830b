package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// snapFormat is the version of the snapshot encoding.
const snapFormat = 2

// The snapshot encoding: JSON with the queues sorted by name, each with
// its event count, its kept rejections (oldest first) and their counts,
// and its machine state as [machine.Queue.Snapshot] writes it, so that
// clients that folded the same events write the same bytes.
type snapState struct {
	Format int         `json:"format"`
	Seq    uint64      `json:"seq"`  // the stream sequence of the last event folded
	Last   string      `json:"last"` // its ESK
	Queues []snapQueue `json:"queues"`
}

type snapQueue struct {
	Name      string         `json:"name"`
	Events    uint64         `json:"events"` // events of the queue's ESK folded
	Clamped   uint64         `json:"clamped,omitempty"`
	Malformed snapRejections `json:"malformed"`
	Refused   snapRejections `json:"refused"`
	// State is written by hand after the other fields, and read by
	// encoding/json.
	State json.RawMessage `json:"state,omitempty"`
}

type snapRejections struct {
	Count uint64          `json:"count"`
	Kept  []snapRejection `json:"kept"`
}

type snapRejection struct {
	Index  uint64        `json:"index"`
	Seq    uint64        `json:"seq"`
	Time   hlc.Timestamp `json:"time"`
	Op     string        `json:"op,omitzero"`
	Reason string        `json:"reason"`
	Data   []byte        `json:"data,omitempty"` // omitted when empty, nil or not
}

// frozen is a copy of what a snapshot holds, taken under the read lock
// so that encoding it holds up nothing.
type frozen struct {
	seq    uint64
	last   string
	queues []frozenQueue
}

type frozenQueue struct {
	name               string
	events, clamped    uint64
	q                  *machine.Frozen
	malformed, refused frozenRejections
}

// frozenRejections is a copy of a queue's rejections: their count and
// those kept, oldest first. The rejections' data is shared: nothing
// changes it.
type frozenRejections struct {
	count uint64
	kept  []Rejection
}

func freezeRejections(r *rejections) frozenRejections {
	return frozenRejections{count: r.Count(), kept: r.List()}
}

// freeze copies the folded state: every queue that has events, with its
// machine state, rejections and count. The fold waits for the copy
// only.
func (c *Client) freeze() *frozen {
	c.mu.RLock()
	defer c.mu.RUnlock()
	f := &frozen{seq: c.folded, last: c.last, queues: make([]frozenQueue, 0, len(c.counts))}
	for esk, n := range c.counts {
		qs := c.queues[strings.TrimPrefix(esk, ESKPrefix)]
		f.queues = append(f.queues, frozenQueue{
			name: qs.name, events: n, clamped: qs.clamped, q: qs.q.Freeze(),
			malformed: freezeRejections(&qs.malformed), refused: freezeRejections(&qs.refused),
		})
	}
	return f
}

// encode writes the deterministic encoding of f.
func (f *frozen) encode() ([]byte, error) {
	slices.SortFunc(f.queues, func(a, b frozenQueue) int { return strings.Compare(a.name, b.name) })
	head, err := json.Marshal(snapState{Format: snapFormat, Seq: f.seq, Last: f.last})
	if err != nil {
		return nil, fmt.Errorf("tasks: encode snapshot: %w", err)
	}
	var b bytes.Buffer
	b.Write(bytes.TrimSuffix(head, []byte(`null}`)))
	b.WriteByte('[')
	for i, fq := range f.queues {
		state, err := fq.q.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("tasks: encode snapshot of queue %q: %w", fq.name, err)
		}
		meta, err := json.Marshal(snapQueue{Name: fq.name, Events: fq.events, Clamped: fq.clamped,
			Malformed: toSnapRejections(&fq.malformed), Refused: toSnapRejections(&fq.refused)})
		if err != nil {
			return nil, fmt.Errorf("tasks: encode snapshot of queue %q: %w", fq.name, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(meta[:len(meta)-1])
		b.WriteString(`,"state":`)
		b.Write(state)
		b.WriteByte('}')
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

func toSnapRejections(r *frozenRejections) snapRejections {
	out := snapRejections{Count: r.count, Kept: make([]snapRejection, 0, len(r.kept))}
	for _, x := range r.kept {
		out.Kept = append(out.Kept, snapRejection{Index: x.Index, Seq: x.Seq, Time: x.Time, Op: x.Op, Reason: x.Reason, Data: x.Data})
	}
	return out
}

// errCorrupt is wrapped by the errors of decoding a snapshot.
var errCorrupt = errors.New("tasks: corrupt snapshot")

// restoredState is the state a snapshot decodes to.
type restoredState struct {
	seq    uint64
	last   string
	queues map[string]*queueState
	counts map[string]uint64
}

// decodeSnapshot decodes what encode wrote, checking that it describes a
// state a fold could reach, and keeps the newest keep rejections of each
// kind per queue.
func decodeSnapshot(data []byte, keep int) (*restoredState, error) {
	var s snapState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", errCorrupt)
	}
	if s.Format != snapFormat {
		return nil, fmt.Errorf("%w: format %d, this version reads %d", errCorrupt, s.Format, snapFormat)
	}
	if s.Seq == 0 {
		return nil, fmt.Errorf("%w: it covers no event", errCorrupt)
	}
	st := &restoredState{seq: s.Seq, last: s.Last, queues: map[string]*queueState{}, counts: map[string]uint64{}}
	for i, sq := range s.Queues {
		if i > 0 && s.Queues[i-1].Name >= sq.Name {
			return nil, fmt.Errorf("%w: queues out of order at %q", errCorrupt, sq.Name)
		}
		esk := ESKPrefix + sq.Name
		if err := transport.ValidateESK(esk); err != nil {
			return nil, fmt.Errorf("%w: queue %q: %v", errCorrupt, sq.Name, err)
		}
		if sq.Events == 0 {
			return nil, fmt.Errorf("%w: queue %q has no events", errCorrupt, sq.Name)
		}
		qs := &queueState{name: sq.Name, q: machine.New(sq.Name), clamped: sq.Clamped, changed: make(chan struct{})}
		if err := qs.q.Restore(sq.State); err != nil {
			return nil, fmt.Errorf("%w: queue %q: %v", errCorrupt, sq.Name, err)
		}
		var err error
		if qs.malformed, err = sq.Malformed.rejections(esk, s.Seq, sq.Events, true, keep); err != nil {
			return nil, fmt.Errorf("%w: queue %q: malformed: %v", errCorrupt, sq.Name, err)
		}
		if qs.refused, err = sq.Refused.rejections(esk, s.Seq, sq.Events, false, keep); err != nil {
			return nil, fmt.Errorf("%w: queue %q: refused: %v", errCorrupt, sq.Name, err)
		}
		st.queues[sq.Name] = qs
		st.counts[esk] = sq.Events
	}
	if st.counts[s.Last] == 0 {
		return nil, fmt.Errorf("%w: the last event's ESK %q has no queue", errCorrupt, s.Last)
	}
	return st, nil
}

// rejections checks and returns the kept rejections of ESK esk, whose
// events up to seq number events, keeping the newest keep.
func (d snapRejections) rejections(esk string, seq, events uint64, malformed bool, keep int) (rejections, error) {
	if uint64(len(d.Kept)) > d.Count {
		return rejections{}, fmt.Errorf("%d kept of %d rejections", len(d.Kept), d.Count)
	}
	kept := make([]Rejection, 0, len(d.Kept))
	for i, x := range d.Kept {
		switch {
		case x.Seq == 0 || x.Seq > seq || x.Index >= events:
			return rejections{}, fmt.Errorf("rejection at index %d, seq %d: beyond the snapshot", x.Index, x.Seq)
		case i > 0 && (x.Seq < d.Kept[i-1].Seq || x.Index < d.Kept[i-1].Index):
			return rejections{}, fmt.Errorf("rejections out of order at seq %d", x.Seq)
		case x.Reason == "" || len(x.Data) > maxKeptRejectedPayload:
			return rejections{}, fmt.Errorf("rejection at seq %d: no reason, or %d bytes kept", x.Seq, len(x.Data))
		}
		kept = append(kept, Rejection{Position: transport.Position{ESK: esk, Index: x.Index, Seq: x.Seq},
			Time: x.Time, Op: x.Op, Reason: x.Reason, Malformed: malformed, Data: x.Data})
	}
	return fold.NewRejections(d.Count, kept, keep)
}

// install makes st the client's state, before the fold starts.
func (c *Client) install(st *restoredState) {
	c.mu.Lock()
	c.queues, c.counts = st.queues, st.counts
	c.folded, c.last = st.seq, st.last
	c.mu.Unlock()
	c.restored = st.seq
}
