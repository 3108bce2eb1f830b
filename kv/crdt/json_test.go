package crdt

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const ts1 = `"0000000000000000001.0000000002"`

// roundTrip decodes enc into a fresh *S and checks it equals want and
// re-encodes to the same bytes, both through MarshalJSON and json.Marshal.
func roundTrip[S any, P interface {
	*S
	json.Marshaler
	json.Unmarshaler
	Equal(*S) bool
}](t *testing.T, want P, enc string) {
	t.Helper()
	got := P(new(S))
	if err := got.UnmarshalJSON([]byte(enc)); err != nil {
		t.Fatalf("UnmarshalJSON(%s): %v", enc, err)
	}
	if !got.Equal((*S)(want)) {
		t.Fatalf("decoded state differs from the original (%s)", enc)
	}
	if again := mustJSON(t, got); again != enc {
		t.Fatalf("re-encoded:\n%s\nwant\n%s", again, enc)
	}
	if viaMarshal, err := json.Marshal(got); err != nil || string(viaMarshal) != enc {
		t.Fatalf("json.Marshal = %s, %v; want %s", viaMarshal, err, enc)
	}
}

func TestJSONGolden(t *testing.T) {
	t.Run("LWW", func(t *testing.T) {
		var r LWW
		roundTrip(t, &r, `{}`)
		if err := r.Apply(LWWOp{Dot: dot("a.b", 3), TS: ts(1, 2), Value: raw(`{"k": "<v>"}`)}); err != nil {
			t.Fatal(err)
		}
		want := `{"ts":` + ts1 + `,"dot":{"esk":"a.b","index":3},"value":{"k":"\u003cv\u003e"}}`
		if got := mustJSON(t, &r); got != want {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
		roundTrip(t, &r, want)
		if err := r.Apply(LWWOp{Dot: dot("a.b", 4), TS: ts(1, 3), Delete: true}); err != nil {
			t.Fatal(err)
		}
		roundTrip(t, &r, `{"ts":"0000000000000000001.0000000003","dot":{"esk":"a.b","index":4},"deleted":true}`)
	})
	t.Run("ORSet", func(t *testing.T) {
		var s ORSet
		roundTrip(t, &s, `{"elements":[]}`)
		for _, op := range []ORSetOp{add("y", dot("b", 0)), add("x", dot("a", 1)), add("x", dot("a", 0)), remove("x", dot("a", 0)), remove("z", dot("c", 5))} {
			if err := s.Apply(op); err != nil {
				t.Fatal(err)
			}
		}
		roundTrip(t, &s, `{"elements":[`+
			`{"element":"x","tags":[{"esk":"a","index":1}],"removed":[{"esk":"a","index":0}]},`+
			`{"element":"y","tags":[{"esk":"b","index":0}]},`+
			`{"element":"z","removed":[{"esk":"c","index":5}]}]}`)
	})
	t.Run("Counter", func(t *testing.T) {
		var c Counter
		roundTrip(t, &c, `{"writers":[]}`)
		for _, op := range []CounterOp{inc("w2", dot("b", 0), -1), inc("w1", dot("a", 10), 3), inc("w1", dot("a", 2), 4)} {
			if err := c.Apply(op); err != nil {
				t.Fatal(err)
			}
		}
		roundTrip(t, &c, `{"writers":[`+
			`{"writer":"w1","ops":[{"dot":{"esk":"a","index":2},"delta":4},{"dot":{"esk":"a","index":10},"delta":3}]},`+
			`{"writer":"w2","ops":[{"dot":{"esk":"b","index":0},"delta":-1}]}]}`)
	})
	t.Run("MVReg", func(t *testing.T) {
		var r MVReg
		roundTrip(t, &r, `{"values":[],"replaced":[]}`)
		for _, op := range []MVRegOp{write(dot("b", 0), `2`, dot("a", 0)), write(dot("a", 1), `null`)} {
			if err := r.Apply(op); err != nil {
				t.Fatal(err)
			}
		}
		roundTrip(t, &r, `{"values":[{"dot":{"esk":"a","index":1},"value":null},{"dot":{"esk":"b","index":0},"value":2}],"replaced":[{"esk":"a","index":0}]}`)
	})
	t.Run("Map", func(t *testing.T) {
		var m Map
		roundTrip(t, &m, `{"keys":[]}`)
		for _, op := range []MapOp{mset("s", dot("a", 0), 1, `"v"`), madd("n", dot("a", 1), "w", 2), mremove("n", dot("a", 1))} {
			if err := m.Apply(op); err != nil {
				t.Fatal(err)
			}
		}
		roundTrip(t, &m, `{"keys":[`+
			`{"key":"n","removed":[{"esk":"a","index":1}],"counter":{"writers":[{"writer":"w","ops":[{"dot":{"esk":"a","index":1},"delta":2}]}]}},`+
			`{"key":"s","tags":[{"esk":"a","index":0}],"register":{"ts":"0000000000000000001.0000000000","dot":{"esk":"a","index":0},"value":"v"}}]}`)
	})
}

func TestJSONRejectsMalformed(t *testing.T) {
	d0, d1 := `{"esk":"a","index":0}`, `{"esk":"a","index":1}`
	tests := []struct {
		typ, name, in, errHas string
	}{
		{"LWW", "not JSON", `{`, "unexpected EOF"},
		{"LWW", "null", `null`, "null"},
		{"LWW", "array", `[]`, "cannot unmarshal"},
		{"LWW", "unknown field", `{"x":1}`, `unknown field "x"`},
		{"LWW", "trailing data", `{} {}`, "trailing data"},
		{"LWW", "missing dot", `{"ts":` + ts1 + `,"value":1}`, `"ts" and "dot"`},
		{"LWW", "bad timestamp", `{"ts":"1.x","dot":` + d0 + `,"value":1}`, "invalid timestamp"},
		{"LWW", "value and tombstone", `{"ts":` + ts1 + `,"dot":` + d0 + `,"deleted":true,"value":1}`, "tombstone"},
		{"LWW", "set without value", `{"ts":` + ts1 + `,"dot":` + d0 + `}`, `needs a "value"`},
		{"LWW", "empty ESK", `{"ts":` + ts1 + `,"dot":{"esk":"","index":0},"value":1}`, "empty ESK"},
		{"LWW", "dot without index", `{"ts":` + ts1 + `,"dot":{"esk":"a"},"value":1}`, `"esk" and "index"`},
		{"LWW", "negative index", `{"ts":` + ts1 + `,"dot":{"esk":"a","index":-1},"value":1}`, "cannot unmarshal"},
		{"ORSet", "element missing", `{"elements":[{"tags":[` + d0 + `]}]}`, `missing "element"`},
		{"ORSet", "unsorted elements", `{"elements":[{"element":"b","tags":[` + d0 + `]},{"element":"a","tags":[` + d1 + `]}]}`, "strictly increasing"},
		{"ORSet", "duplicate element", `{"elements":[{"element":"a","tags":[` + d0 + `]},{"element":"a","tags":[` + d1 + `]}]}`, "strictly increasing"},
		{"ORSet", "unsorted tags", `{"elements":[{"element":"a","tags":[` + d1 + `,` + d0 + `]}]}`, "tags: dots not strictly increasing"},
		{"ORSet", "empty entry", `{"elements":[{"element":"a"}]}`, "no tags"},
		{"ORSet", "live and removed", `{"elements":[{"element":"a","tags":[` + d0 + `],"removed":[` + d0 + `]}]}`, "both live and removed"},
		{"ORSet", "null dot", `{"elements":[{"element":"a","tags":[null]}]}`, "null"},
		{"Counter", "writers not a list", `{"writers":{}}`, "cannot unmarshal"},
		{"Counter", "empty writer", `{"writers":[{"writer":"","ops":[{"dot":` + d0 + `,"delta":1}]}]}`, "empty \"writer\""},
		{"Counter", "writer without ops", `{"writers":[{"writer":"w","ops":[]}]}`, "no ops"},
		{"Counter", "missing delta", `{"writers":[{"writer":"w","ops":[{"dot":` + d0 + `}]}]}`, `"dot" and "delta"`},
		{"Counter", "delta out of range", `{"writers":[{"writer":"w","ops":[{"dot":` + d0 + `,"delta":9223372036854775808}]}]}`, "cannot unmarshal"},
		{"Counter", "fractional delta", `{"writers":[{"writer":"w","ops":[{"dot":` + d0 + `,"delta":1.5}]}]}`, "cannot unmarshal"},
		{"Counter", "duplicate dot", `{"writers":[{"writer":"w","ops":[{"dot":` + d0 + `,"delta":1},{"dot":` + d0 + `,"delta":2}]}]}`, "strictly increasing"},
		{"Counter", "unsorted writers", `{"writers":[{"writer":"x","ops":[{"dot":` + d0 + `,"delta":1}]},{"writer":"w","ops":[{"dot":` + d1 + `,"delta":1}]}]}`, "strictly increasing"},
		{"MVReg", "value without dot", `{"values":[{"value":1}],"replaced":[]}`, `"dot" and "value"`},
		{"MVReg", "dot without value", `{"values":[{"dot":` + d0 + `}],"replaced":[]}`, `"dot" and "value"`},
		{"MVReg", "replaced value", `{"values":[{"dot":` + d0 + `,"value":1}],"replaced":[` + d0 + `]}`, "also replaced"},
		{"MVReg", "unsorted values", `{"values":[{"dot":` + d1 + `,"value":1},{"dot":` + d0 + `,"value":1}],"replaced":[]}`, "strictly increasing"},
		{"MVReg", "unsorted replaced", `{"values":[],"replaced":[` + d1 + `,` + d0 + `]}`, "replaced: dots not strictly increasing"},
		{"Map", "unsorted keys", `{"keys":[{"key":"b","tags":[` + d0 + `]},{"key":"a","tags":[` + d1 + `]}]}`, "strictly increasing"},
		{"Map", "key without tags", `{"keys":[{"key":"a"}]}`, "no tags"},
		{"Map", "empty register", `{"keys":[{"key":"a","tags":[` + d0 + `],"register":{}}]}`, "empty register"},
		{"Map", "tombstone register", `{"keys":[{"key":"a","tags":[` + d0 + `],"register":{"ts":` + ts1 + `,"dot":` + d0 + `,"deleted":true}}]}`, "tombstone"},
		{"Map", "empty counter", `{"keys":[{"key":"a","tags":[` + d0 + `],"counter":{"writers":[]}}]}`, "empty counter"},
		{"Map", "bad nested register", `{"keys":[{"key":"a","tags":[` + d0 + `],"register":{"ts":` + ts1 + `}}]}`, `"ts" and "dot"`},
		{"Map", "unknown nested field", `{"keys":[{"key":"a","tags":[` + d0 + `],"counter":{"writers":[],"x":0}}]}`, `unknown field "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.typ+"/"+tc.name, func(t *testing.T) {
			// Each target holds a non-empty state, which must survive the
			// failed decode.
			var target interface {
				json.Marshaler
				json.Unmarshaler
			}
			switch tc.typ {
			case "LWW":
				r := &LWW{}
				_ = r.Apply(LWWOp{Dot: dot("k", 0), TS: ts(1, 0), Value: raw(`1`)})
				target = r
			case "ORSet":
				s := &ORSet{}
				_ = s.Apply(add("k", dot("k", 0)))
				target = s
			case "Counter":
				c := &Counter{}
				_ = c.Apply(inc("k", dot("k", 0), 1))
				target = c
			case "MVReg":
				r := &MVReg{}
				_ = r.Apply(write(dot("k", 0), `1`))
				target = r
			case "Map":
				m := &Map{}
				_ = m.Apply(madd("k", dot("k", 0), "w", 1))
				target = m
			}
			before := mustJSON(t, target)
			err := target.UnmarshalJSON([]byte(tc.in))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("UnmarshalJSON(%s) = %v; want ErrMalformed mentioning %q", tc.in, err, tc.errHas)
			}
			if after := mustJSON(t, target); after != before {
				t.Fatalf("failed decode changed the state: %s", after)
			}
		})
	}
}

func TestDotOrder(t *testing.T) {
	ordered := []Dot{dot("a", 0), dot("a", 1), dot("a", 10), dot("a.b", 0), dot("b", 0)}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := ordered[i].Compare(ordered[j]); got != want {
				t.Fatalf("%s.Compare(%s) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	if s := dot("orders.eu", 3).String(); s != "orders.eu@3" {
		t.Fatalf("String = %s", s)
	}
	b, err := json.Marshal(dot("orders.eu", 3))
	if err != nil || string(b) != `{"esk":"orders.eu","index":3}` {
		t.Fatalf("json.Marshal = %s, %v", b, err)
	}
	var d Dot
	if err := json.Unmarshal(b, &d); err != nil || d != dot("orders.eu", 3) {
		t.Fatalf("json.Unmarshal = %v, %v", d, err)
	}
	for _, bad := range []string{`{"esk":"a"}`, `{"index":1}`, `{"esk":"","index":1}`, `{"esk":"a","index":1,"x":0}`, `null`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Fatalf("json.Unmarshal(%s) accepted", bad)
		}
	}
}
