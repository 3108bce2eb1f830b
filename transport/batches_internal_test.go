package transport

import "testing"

func TestAckSeqTime(t *testing.T) {
	for _, c := range []struct {
		reply  string
		seq    uint64
		ts     int64
		wantOK bool
	}{
		{"$JS.ACK.EVENTS.cons.1.42.7.1700000000000000000.3", 42, 1700000000000000000, true},
		{"$JS.ACK._.hash.EVENTS.cons.1.42.7.1700000000000000000.3.tok", 42, 1700000000000000000, true},
		{"$JS.ACK.dom.hash.EVENTS.cons.1.42.7.1700000000000000000.3", 42, 1700000000000000000, true},
		{"$JS.ACK.EVENTS.cons.1.x.7.1700000000000000000.3", 0, 0, false},
		{"$JS.ACK.EVENTS.cons.1.0.7.1.3", 0, 0, false},
		{"$JS.ACK.EVENTS.cons.1.42.7.1", 0, 0, false},
		{"$JS.ACK.a.b.EVENTS.cons.1.42.7.1.3.t.u", 0, 0, false},
		{"_INBOX.x.EVENTS.cons.1.42.7.1.3", 0, 0, false},
		{"", 0, 0, false},
	} {
		seq, ts, ok := ackSeqTime(c.reply)
		if ok != c.wantOK || ok && (seq != c.seq || ts != c.ts) {
			t.Errorf("%q: %d, %d, %v; want %d, %d, %v", c.reply, seq, ts, ok, c.seq, c.ts, c.wantOK)
		}
	}
}
