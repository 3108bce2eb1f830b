package transport

import "testing"

func TestCoveringFilter(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"events.bank.decisions", "events.bank.decisions.rejected"}, "events.bank.>"},
		{[]string{"events.orders.*", "events.orders.eu.x"}, "events.orders.>"},
		{[]string{"events.a", "events.b"}, "events.>"},
		{[]string{"events.a.>", "events.a.b"}, "events.a.>"},
		{[]string{"events.a", "other.a"}, ">"},
	} {
		got := coveringFilter(c.in)
		if got != c.want {
			t.Errorf("coveringFilter(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, f := range c.in {
			sample := f
			if sample[len(sample)-1] == '>' || sample[len(sample)-1] == '*' {
				sample = sample[:len(sample)-1] + "x"
			}
			if !subjectMatches(got, sample) {
				t.Errorf("%q does not match %q", got, sample)
			}
		}
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"$JS.API.CONSUMER.>", "$JS.API.CONSUMER.CREATE.EVENTS.x.y", true},
		{"$JS.API.CONSUMER.CREATE.*", "$JS.API.CONSUMER.CREATE.EVENTS.x", false},
		{"a.*.c", "a.b.c", true},
		{"a.>", "a", false},
		{"a.b", "a.b", true},
	} {
		if got := subjectMatches(c.p, c.s); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v", c.p, c.s, got)
		}
	}
}
