package matching

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/detbus/detbus/transform"
)

// step is one input of a protocol and the outputs it must cause. Outputs
// are written without "instrument" and "input", which every output must
// carry with the step's values; the comparison ignores field order.
type step struct {
	esk  string // "" means "orders.x"
	in   string
	want []string
}

// runProtocol feeds the steps to a fresh engine, numbering inputs the way
// the log does: Index per ESK, Seq over all of them.
func runProtocol(t *testing.T, steps []step) *Engine {
	t.Helper()
	e := New()
	index := map[string]uint64{}
	for i, st := range steps {
		esk := st.esk
		if esk == "" {
			esk = "orders.x"
		}
		in := transform.Input{ESK: esk, Index: index[esk], Seq: uint64(i + 1), Data: []byte(st.in)}
		index[esk]++
		outs, err := e.Step(transform.NewContext(in), in)
		if err != nil {
			t.Fatalf("step %d %s: %v", i, st.in, err)
		}
		var got, want []string
		for _, o := range outs {
			got = append(got, stripPosition(t, o, instrumentOf(esk), in))
		}
		for _, w := range st.want {
			want = append(want, canonical(t, []byte(w)))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("step %d %s:\n got  %q\n want %q", i, st.in, got, want)
		}
	}
	return e
}

// canonical re-encodes a JSON object with sorted keys, keeping numbers
// as written.
func canonical(t *testing.T, b []byte) string {
	t.Helper()
	m := decodeObject(t, b)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func decodeObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// stripPosition checks an output's "instrument" and "input" and returns
// the rest in canonical form.
func stripPosition(t *testing.T, out []byte, inst string, in transform.Input) string {
	t.Helper()
	var pos struct {
		Instrument *string
		Input      *InputRef
	}
	if err := json.Unmarshal(out, &pos); err != nil {
		t.Fatalf("output %s: %v", out, err)
	}
	if pos.Instrument == nil || *pos.Instrument != inst || pos.Input == nil || *pos.Input != (InputRef{ESK: in.ESK, Index: in.Index}) {
		t.Fatalf("output %s: want instrument %q and input %s#%d", out, inst, in.ESK, in.Index)
	}
	m := decodeObject(t, out)
	delete(m, "instrument")
	delete(m, "input")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestProtocol(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{{
		name: "simple cross at the maker's price",
		steps: []step{
			{in: `{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a1"}`, want: []string{`{"type":"ack","id":"o1"}`}},
			{in: `{"op":"limit","id":"o2","side":"sell","price":99,"qty":5,"account":"a2"}`, want: []string{
				`{"type":"ack","id":"o2"}`,
				`{"type":"trade","buy":"o1","sell":"o2","price":100,"qty":5,"maker":"o1","taker":"o2"}`,
				`{"type":"done","id":"o1"}`,
				`{"type":"done","id":"o2"}`,
			}},
			{in: `{"op":"limit","id":"o3","side":"sell","price":100,"qty":1,"account":"a2"}`, want: []string{`{"type":"ack","id":"o3"}`}},
		},
	}, {
		name: "partial fills across several levels",
		steps: []step{
			{in: `{"op":"limit","id":"s3","side":"sell","price":103,"qty":4,"account":"a"}`, want: []string{`{"type":"ack","id":"s3"}`}},
			{in: `{"op":"limit","id":"s1","side":"sell","price":101,"qty":2,"account":"a"}`, want: []string{`{"type":"ack","id":"s1"}`}},
			{in: `{"op":"limit","id":"s2","side":"sell","price":102,"qty":3,"account":"a"}`, want: []string{`{"type":"ack","id":"s2"}`}},
			{in: `{"op":"limit","id":"b1","side":"buy","price":102,"qty":10,"account":"b"}`, want: []string{
				`{"type":"ack","id":"b1"}`,
				`{"type":"trade","buy":"b1","sell":"s1","price":101,"qty":2,"maker":"s1","taker":"b1"}`,
				`{"type":"done","id":"s1"}`,
				`{"type":"trade","buy":"b1","sell":"s2","price":102,"qty":3,"maker":"s2","taker":"b1"}`,
				`{"type":"done","id":"s2"}`,
			}},
			// b1 rests 5 at 102, below s3 at 103.
			{in: `{"op":"limit","id":"s4","side":"sell","price":102,"qty":1,"account":"a"}`, want: []string{
				`{"type":"ack","id":"s4"}`,
				`{"type":"trade","buy":"b1","sell":"s4","price":102,"qty":1,"maker":"b1","taker":"s4"}`,
				`{"type":"done","id":"s4"}`,
			}},
			{in: `{"op":"cancel","id":"b1"}`, want: []string{`{"type":"cancelled","id":"b1","remaining":4}`}},
			{in: `{"op":"cancel","id":"s3"}`, want: []string{`{"type":"cancelled","id":"s3","remaining":4}`}},
		},
	}, {
		name: "price-time priority",
		steps: []step{
			{in: `{"op":"limit","id":"b1","side":"buy","price":100,"qty":2,"account":"a"}`, want: []string{`{"type":"ack","id":"b1"}`}},
			{in: `{"op":"limit","id":"b2","side":"buy","price":100,"qty":2,"account":"a"}`, want: []string{`{"type":"ack","id":"b2"}`}},
			{in: `{"op":"limit","id":"b3","side":"buy","price":101,"qty":1,"account":"a"}`, want: []string{`{"type":"ack","id":"b3"}`}},
			{in: `{"op":"limit","id":"s1","side":"sell","price":100,"qty":4,"account":"b"}`, want: []string{
				`{"type":"ack","id":"s1"}`,
				`{"type":"trade","buy":"b3","sell":"s1","price":101,"qty":1,"maker":"b3","taker":"s1"}`,
				`{"type":"done","id":"b3"}`,
				`{"type":"trade","buy":"b1","sell":"s1","price":100,"qty":2,"maker":"b1","taker":"s1"}`,
				`{"type":"done","id":"b1"}`,
				`{"type":"trade","buy":"b2","sell":"s1","price":100,"qty":1,"maker":"b2","taker":"s1"}`,
				`{"type":"done","id":"s1"}`,
			}},
			{in: `{"op":"cancel","id":"b2"}`, want: []string{`{"type":"cancelled","id":"b2","remaining":1}`}},
		},
	}, {
		name: "market order partially filled, rest cancelled",
		steps: []step{
			{in: `{"op":"market","id":"m0","side":"buy","qty":4,"account":"b"}`, want: []string{`{"type":"cancelled","id":"m0","remaining":4}`}},
			{in: `{"op":"limit","id":"s1","side":"sell","price":105,"qty":2,"account":"a"}`, want: []string{`{"type":"ack","id":"s1"}`}},
			{in: `{"op":"limit","id":"s2","side":"sell","price":250,"qty":1,"account":"a"}`, want: []string{`{"type":"ack","id":"s2"}`}},
			{in: `{"op":"market","id":"m1","side":"buy","qty":5,"account":"b"}`, want: []string{
				`{"type":"trade","buy":"m1","sell":"s1","price":105,"qty":2,"maker":"s1","taker":"m1"}`,
				`{"type":"done","id":"s1"}`,
				`{"type":"trade","buy":"m1","sell":"s2","price":250,"qty":1,"maker":"s2","taker":"m1"}`,
				`{"type":"done","id":"s2"}`,
				`{"type":"cancelled","id":"m1","remaining":2}`,
			}},
			{in: `{"op":"cancel","id":"m1"}`, want: []string{`{"type":"reject","id":"m1","reason":"order \"m1\" is not resting"}`}},
			{in: `{"op":"limit","id":"b1","side":"buy","price":90,"qty":3,"account":"b"}`, want: []string{`{"type":"ack","id":"b1"}`}},
			{in: `{"op":"market","id":"m2","side":"sell","qty":3,"account":"a"}`, want: []string{
				`{"type":"trade","buy":"b1","sell":"m2","price":90,"qty":3,"maker":"b1","taker":"m2"}`,
				`{"type":"done","id":"b1"}`,
				`{"type":"done","id":"m2"}`,
			}},
		},
	}, {
		name: "cancel resting",
		steps: []step{
			{in: `{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a"}`, want: []string{`{"type":"ack","id":"o1"}`}},
			{in: `{"op":"cancel","id":"o1"}`, want: []string{`{"type":"cancelled","id":"o1","remaining":5}`}},
			{in: `{"op":"cancel","id":"o1"}`, want: []string{`{"type":"reject","id":"o1","reason":"order \"o1\" is not resting"}`}},
			{in: `{"op":"limit","id":"o2","side":"sell","price":100,"qty":1,"account":"b"}`, want: []string{`{"type":"ack","id":"o2"}`}},
		},
	}, {
		name: "cancel unknown",
		steps: []step{
			{in: `{"op":"cancel","id":"nope"}`, want: []string{`{"type":"reject","id":"nope","reason":"unknown order \"nope\""}`}},
			{in: `{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a"}`, want: []string{`{"type":"ack","id":"o1"}`}},
			{in: `{"op":"cancel","id":"o2"}`, want: []string{`{"type":"reject","id":"o2","reason":"unknown order \"o2\""}`}},
		},
	}, {
		name: "duplicate id",
		steps: []step{
			{in: `{"op":"limit","id":"o1","side":"buy","price":100,"qty":0,"account":"a"}`, want: []string{`{"type":"reject","id":"o1","reason":"qty must be positive"}`}},
			{in: `{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a"}`, want: []string{`{"type":"ack","id":"o1"}`}},
			{in: `{"op":"limit","id":"o1","side":"sell","price":100,"qty":5,"account":"a"}`, want: []string{`{"type":"reject","id":"o1","reason":"duplicate id \"o1\""}`}},
			{in: `{"op":"market","id":"o1","side":"sell","qty":5,"account":"a"}`, want: []string{`{"type":"reject","id":"o1","reason":"duplicate id \"o1\""}`}},
			{in: `{"op":"cancel","id":"o1"}`, want: []string{`{"type":"cancelled","id":"o1","remaining":5}`}},
			{in: `{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a"}`, want: []string{`{"type":"reject","id":"o1","reason":"duplicate id \"o1\""}`}},
		},
	}, {
		name: "malformed JSON",
		steps: []step{
			{in: `{"op":"limit","id":"o1",`, want: []string{`{"type":"reject","reason":"malformed JSON"}`}},
			{in: `{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a"}`, want: []string{`{"type":"ack","id":"o1"}`}},
		},
	}, {
		name: "two instruments are independent",
		steps: []step{
			{esk: "orders.a", in: `{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a"}`, want: []string{`{"type":"ack","id":"o1"}`}},
			{esk: "orders.b", in: `{"op":"limit","id":"o1","side":"sell","price":90,"qty":5,"account":"a"}`, want: []string{`{"type":"ack","id":"o1"}`}},
			{esk: "orders.b", in: `{"op":"limit","id":"o2","side":"sell","price":90,"qty":5,"account":"a"}`, want: []string{`{"type":"ack","id":"o2"}`}},
			{esk: "orders.a", in: `{"op":"cancel","id":"o2"}`, want: []string{`{"type":"reject","id":"o2","reason":"unknown order \"o2\""}`}},
			{esk: "orders.a", in: `{"op":"limit","id":"o3","side":"sell","price":100,"qty":1,"account":"b"}`, want: []string{
				`{"type":"ack","id":"o3"}`,
				`{"type":"trade","buy":"o1","sell":"o3","price":100,"qty":1,"maker":"o1","taker":"o3"}`,
				`{"type":"done","id":"o3"}`,
			}},
			{esk: "orders.b", in: `{"op":"cancel","id":"o1"}`, want: []string{`{"type":"cancelled","id":"o1","remaining":5}`}},
			{esk: "orders.a", in: `{"op":"cancel","id":"o1"}`, want: []string{`{"type":"cancelled","id":"o1","remaining":4}`}},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runProtocol(t, tc.steps) })
	}
}

func TestRejectReasons(t *testing.T) {
	tests := []struct{ in, id, reason string }{
		{`not json`, "", "malformed JSON"},
		{"{\"op\":\"cancel\",\"id\":\"\xff\"}", "", "malformed JSON"},
		{`[1,2]`, "", "order must be a JSON object"},
		{`{"op":"cancel","id":"o1","id":"o2"}`, "", `duplicate field "id"`},
		{`{"id":"o1"}`, "o1", "missing op"},
		{`{"op":7,"id":"o1"}`, "o1", "op must be a string"},
		{`{"op":"stop","id":"o1"}`, "o1", `unknown op "stop"`},
		{`{"op":"cancel","id":"o1","memo":"x"}`, "o1", `unknown field "memo"`},
		{`{"op":"market","id":"o1","side":"buy","price":1,"qty":1,"account":"a"}`, "o1", `field "price" does not apply to market`},
		{`{"op":"cancel","id":"o1","qty":1}`, "o1", `field "qty" does not apply to cancel`},
		{`{"op":"cancel","id":"o1","qty":null}`, "o1", `unknown order "o1"`},
		{`{"op":"cancel"}`, "", "missing id"},
		{`{"op":"cancel","id":5}`, "", "id must be a string"},
		{`{"op":"cancel","id":""}`, "", "id must not be empty"},
		{`{"op":"limit","id":"o1","price":1,"qty":1,"account":"a"}`, "o1", "missing side"},
		{`{"op":"limit","id":"o1","side":"BUY","price":1,"qty":1,"account":"a"}`, "o1", `side must be "buy" or "sell"`},
		{`{"op":"limit","id":"o1","side":"buy","qty":1,"account":"a"}`, "o1", "missing price"},
		{`{"op":"limit","id":"o1","side":"buy","price":100.5,"qty":1,"account":"a"}`, "o1", "price must be an integer"},
		{`{"op":"limit","id":"o1","side":"buy","price":1e2,"qty":1,"account":"a"}`, "o1", "price must be an integer"},
		{`{"op":"limit","id":"o1","side":"buy","price":"100","qty":1,"account":"a"}`, "o1", "price must be an integer"},
		{`{"op":"limit","id":"o1","side":"buy","price":9223372036854775808,"qty":1,"account":"a"}`, "o1", "price out of range"},
		{`{"op":"limit","id":"o1","side":"buy","price":-3,"qty":1,"account":"a"}`, "o1", "price must be positive"},
		{`{"op":"limit","id":"o1","side":"buy","price":100,"account":"a"}`, "o1", "missing qty"},
		{`{"op":"market","id":"o1","side":"buy","qty":0,"account":"a"}`, "o1", "qty must be positive"},
		{`{"op":"market","id":"o1","side":"buy","qty":2.0,"account":"a"}`, "o1", "qty must be an integer"},
		{`{"op":"limit","id":"o1","side":"buy","price":100,"qty":1}`, "o1", "missing account"},
		{`{"op":"limit","id":"o1","side":"buy","price":100,"qty":1,"account":""}`, "o1", "account must not be empty"},
	}
	for _, tc := range tests {
		want := map[string]string{"type": "reject", "reason": tc.reason}
		if tc.id != "" {
			want["id"] = tc.id
		}
		w, _ := json.Marshal(want)
		runProtocol(t, []step{{in: tc.in, want: []string{string(w)}}})
	}

	e := New()
	in := transform.Input{ESK: "orders.x", ContentType: "text/plain", Data: []byte(`{"op":"cancel","id":"o1"}`)}
	outs, err := e.Step(transform.NewContext(in), in)
	want := `{"type":"reject","instrument":"x","reason":"content type \"text/plain\" is not JSON","input":{"esk":"orders.x","index":0}}`
	if err != nil || len(outs) != 1 || string(outs[0]) != want {
		t.Fatalf("non-JSON content type: %q, %v; want %s", outs, err, want)
	}
	if s, _ := e.Snapshot(); string(s) != `{"books":[]}` {
		t.Fatalf("rejects changed the state: %s", s)
	}
}

// TestBookLevels checks the sorted levels and FIFO queues directly.
func TestBookLevels(t *testing.T) {
	b := newBook()
	rng := rand.New(rand.NewPCG(7, 7))
	var seq uint64
	for range 2000 {
		seq++
		s := side(rng.IntN(2))
		price := int64(100 + rng.IntN(50))
		if s == sell {
			price += 50 // keep the book uncrossed
		}
		b.rest(&order{id: fmt.Sprintf("o%d", seq), side: s, price: price, qty: 1, remaining: 1, seq: seq})
	}
	for _, s := range []side{buy, sell} {
		lv := *b.levels(s)
		for i, l := range lv {
			if i > 0 && compareLevel(s)(lv[i-1], l.price) >= 0 {
				t.Fatalf("%s levels out of order at %d", s, i)
			}
			for o := l.head; o != nil; o = o.next {
				if o.price != l.price || o.lvl != l || (o.next != nil && o.next.seq <= o.seq) {
					t.Fatalf("%s level %d: queue broken at %q", s, l.price, o.id)
				}
			}
		}
	}
	bid, _ := b.best(buy)
	ask, _ := b.best(sell)
	if bid != 149 || ask != 150 {
		t.Fatalf("best bid %d, best ask %d; want 149, 150", bid, ask)
	}
	// Cancel everything in random order: the levels must empty out.
	ids := make([]string, 0, len(b.resting))
	for id := range b.resting {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	for _, id := range ids {
		o := b.resting[id]
		i, ok := b.locate(o)
		if !ok {
			t.Fatalf("order %q not located", id)
		}
		b.remove(o, i)
	}
	if len(b.bids) != 0 || len(b.asks) != 0 || len(b.resting) != 0 {
		t.Fatalf("book not empty: %d bids, %d asks, %d resting", len(b.bids), len(b.asks), len(b.resting))
	}
}
