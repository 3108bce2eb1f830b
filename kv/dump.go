package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/transport"
)

// dumpFormat is the version of the state encoding.
const dumpFormat = 2

// The state encoding: JSON with every list sorted, so that replicas that
// folded the same events write the same bytes.
type dumpState struct {
	Format  int         `json:"format"`
	Applied uint64      `json:"applied"`
	Tables  []dumpTable `json:"tables"`
	Other   dumpRejs    `json:"other"` // rejections of ops on undeclared tables
}

type dumpTable struct {
	Name       string    `json:"name"`
	Type       Type      `json:"type"`
	Declared   dumpPos   `json:"declared"`
	Ops        uint64    `json:"ops"`
	Clamped    uint64    `json:"clamped,omitempty"`
	Rejections dumpRejs  `json:"rejections"`
	Keys       []dumpKey `json:"keys,omitempty"` // written by hand, read by encoding/json
}

type dumpRejs struct {
	Count uint64          `json:"count"`
	Kept  []dumpRejection `json:"kept"`
}

type dumpPos struct {
	ESK   string `json:"esk"`
	Index uint64 `json:"index"`
	Seq   uint64 `json:"seq"`
}

type dumpRejection struct {
	Pos    dumpPos `json:"pos"`
	Table  string  `json:"table"`
	Reason string  `json:"reason"`
	Data   []byte  `json:"data"`
}

type dumpKey struct {
	Key   string          `json:"key"`
	State json.RawMessage `json:"state"`
}

func toDumpPos(p transport.Position) dumpPos { return dumpPos{ESK: p.ESK, Index: p.Index, Seq: p.Seq} }
func (p dumpPos) position() transport.Position {
	return transport.Position{ESK: p.ESK, Index: p.Index, Seq: p.Seq}
}

func toDumpRejs(r *rejections) dumpRejs {
	out := dumpRejs{Count: r.Count(), Kept: []dumpRejection{}}
	for _, x := range r.List() {
		out.Kept = append(out.Kept, dumpRejection{Pos: toDumpPos(x.Position), Table: x.Table, Reason: x.Reason, Data: x.Data})
	}
	return out
}

func (d dumpRejs) rejections() (rejections, error) {
	if len(d.Kept) > MaxRejections {
		return rejections{}, fmt.Errorf("%d rejections kept of %d, at most %d", len(d.Kept), d.Count, MaxRejections)
	}
	kept := make([]Rejection, 0, len(d.Kept))
	for _, x := range d.Kept {
		kept = append(kept, Rejection{Position: x.Pos.position(), Table: x.Table, Reason: x.Reason, Data: x.Data})
	}
	return fold.NewRejections(d.Count, kept, MaxRejections)
}

// dump writes the whole state to w in its deterministic encoding. It
// sorts the tables' keys (see sortedKeys), so the caller must hold what
// protects them.
func (st *state) dump(w io.Writer) error {
	bw := &errWriter{w: w}
	head, _ := json.Marshal(struct {
		Format  int    `json:"format"`
		Applied uint64 `json:"applied"`
	}{dumpFormat, st.applied})
	bw.write(head[:len(head)-1])
	bw.write([]byte(`,"tables":[`))
	names := make([]string, 0, len(st.tables))
	for n := range st.tables {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf []byte
	for i, n := range names {
		t := st.tables[n]
		if i > 0 {
			bw.write([]byte{','})
		}
		h, err := json.Marshal(dumpTable{Name: t.name, Type: t.typ, Declared: toDumpPos(t.declared), Ops: t.ops, Clamped: t.clamped, Rejections: toDumpRejs(&t.rej)})
		if err != nil {
			return err
		}
		bw.write(h[:len(h)-1])
		bw.write([]byte(`,"keys":[`))
		for j, k := range t.sortedKeys() {
			buf = buf[:0]
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = append(appendJSONString(append(buf, `{"key":`...), k), `,"state":`...)
			s, err := json.Marshal(t.keys[k].c)
			if err != nil {
				return fmt.Errorf("kv: encode %s/%s: %w", t.name, k, err)
			}
			buf = append(append(buf, s...), '}')
			bw.write(buf)
		}
		bw.write([]byte("]}"))
	}
	other, _ := json.Marshal(toDumpRejs(&st.other))
	bw.write([]byte(`],"other":`))
	bw.write(other)
	bw.write([]byte("}\n"))
	return bw.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) write(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

// errCorrupt is wrapped by errors decoding a state.
var errCorrupt = errors.New("kv: corrupt state")

// loadState decodes what dump wrote.
func loadState(data []byte) (*state, error) {
	var d dumpState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if d.Format != dumpFormat {
		return nil, fmt.Errorf("%w: format %d, this version reads %d", errCorrupt, d.Format, dumpFormat)
	}
	st := &state{applied: d.Applied, tables: map[string]*table{}}
	var err error
	if st.other, err = d.Other.rejections(); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	for i, dt := range d.Tables {
		if i > 0 && d.Tables[i-1].Name >= dt.Name {
			return nil, fmt.Errorf("%w: tables out of order at %q", errCorrupt, dt.Name)
		}
		if !dt.Type.Valid() || (dt.Name != ConfigTable && ValidateTable(dt.Name) != nil) {
			return nil, fmt.Errorf("%w: table %q of type %q", errCorrupt, dt.Name, dt.Type)
		}
		t := newTable(dt.Name, dt.Type, dt.Declared.position())
		t.ops, t.clamped = dt.Ops, dt.Clamped
		if t.rej, err = dt.Rejections.rejections(); err != nil {
			return nil, fmt.Errorf("%w: table %q: %v", errCorrupt, dt.Name, err)
		}
		t.sorted = make([]string, 0, len(dt.Keys))
		for j, k := range dt.Keys {
			if j > 0 && dt.Keys[j-1].Key >= k.Key {
				return nil, fmt.Errorf("%w: table %q: keys out of order at %q", errCorrupt, dt.Name, k.Key)
			}
			c := newCRDT(dt.Type)
			if err := json.Unmarshal(k.State, c); err != nil {
				return nil, fmt.Errorf("%w: %s/%s: %v", errCorrupt, dt.Name, k.Key, err)
			}
			e := &entry{key: k.Key, c: c, exists: existsOf(c)}
			t.keys[k.Key] = e
			t.sorted = append(t.sorted, k.Key)
			t.countExists(false, e.exists)
		}
		st.tables[dt.Name] = t
	}
	if t := st.tables[ConfigTable]; t == nil || t.typ != TypeLWW {
		return nil, fmt.Errorf("%w: no %s table", errCorrupt, ConfigTable)
	}
	return st, nil
}
