package transport

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestConfirmed checks which stream info replies are trusted for counts:
// only a leader that heard from a majority within LeaderLease.
func TestConfirmed(t *testing.T) {
	peer := func(active time.Duration, current, offline bool) *jetstream.PeerInfo {
		return &jetstream.PeerInfo{Name: "p", Active: active, Current: current, Offline: offline}
	}
	recent, stale := 200*time.Millisecond, 12*time.Second
	for _, c := range []struct {
		name string
		ci   *jetstream.ClusterInfo
		want string // "" when trusted, else a part of the reason
	}{
		{"single node", nil, ""},
		{"R1 in a cluster", &jetstream.ClusterInfo{Leader: "n1"}, ""},
		{"healthy R3", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer(recent, true, false), peer(recent, true, false)}}, ""},
		{"one follower lagging but heard", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer(recent, false, false), peer(stale, false, false)}}, ""},
		{"one follower down", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer(recent, true, false), peer(stale, false, true)}}, ""},
		// A leader cut off from its peers: its followers still look current
		// (nothing new was committed) but it has not heard from them.
		{"isolated leader", &jetstream.ClusterInfo{Leader: "n3", Replicas: []*jetstream.PeerInfo{peer(stale, true, false), peer(5*time.Second, true, false)}}, "heard from 1 of 3"},
		{"never heard", &jetstream.ClusterInfo{Leader: "n3", Replicas: []*jetstream.PeerInfo{peer(0, false, false), peer(0, false, false)}}, "heard from 1 of 3"},
		{"offline peers", &jetstream.ClusterInfo{Leader: "n3", Replicas: []*jetstream.PeerInfo{peer(recent, true, true), peer(recent, true, true)}}, "heard from 1 of 3"},
		{"leaderless member answering", &jetstream.ClusterInfo{Replicas: []*jetstream.PeerInfo{peer(recent, true, false), peer(recent, true, false)}}, "no leader"},
		{"R5 with two heard", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer(recent, true, false), peer(recent, true, false), peer(stale, false, false), peer(stale, false, false)}}, ""},
		{"R5 with one heard", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer(recent, true, false), peer(stale, false, false), peer(stale, false, false), peer(stale, false, false)}}, "heard from 2 of 5"},
	} {
		got := confirmed(c.ci)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: confirmed = %q, want %q", c.name, got, c.want)
		}
	}
}
