package board

import (
	"time"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/transform"
)

// Overview is every DET of the board's stream, as GET /api/transforms
// answers it.
type Overview struct {
	Stream string `json:"stream"`
	// Polled is when the board last read the status board; Error is why
	// the last read failed, "" when it did not (the DETs are then as of
	// Polled).
	Polled     time.Time `json:"polled,omitzero"`
	Error      string    `json:"error,omitempty"`
	Transforms []DET     `json:"transforms"`
}

// DET is one generation of a DET with its instances, as the board last
// read them. History is filled only by [Board.Get].
type DET struct {
	// ID names the DET on the board: its name, "<name>.g<N>" for
	// generation N of 2 or more ([transform.GenerationName]).
	ID         string `json:"id"`
	Stream     string `json:"stream"`
	Name       string `json:"name"`
	Generation uint   `json:"generation"`
	Output     string `json:"output"` // the generation's output ESK
	// State is "running" when an instance runs (or observes), else
	// "stale" when one's heartbeat stopped, else "stopped".
	State string `json:"state"`
	// Outputs is the most outputs an instance counts; Lag the least lag
	// of a live instance (of any when none is live); OutputsPerSecond the
	// rate between the last two samples.
	Outputs          uint64  `json:"outputs"`
	Lag              uint64  `json:"lag"`
	OutputsPerSecond float64 `json:"outputs_per_s"`
	// Updated is the newest heartbeat of its instances.
	Updated   time.Time  `json:"updated,omitzero"`
	Instances []Instance `json:"instances"`
	// Divergences are the ones the instances report (each names its
	// instance), in the order of the instances.
	Divergences []transform.DivergenceError `json:"divergences"`
	// Snapshot is the newest snapshot stored for the generation, nil when
	// there is none; SnapshotError why it could not be read.
	Snapshot      *Snapshot  `json:"snapshot"`
	SnapshotError string     `json:"snapshot_error,omitempty"`
	Rejections    Rejections `json:"rejections"`
	History       []Sample   `json:"history,omitempty"`
}

// Instance is one instance's [transform.Status] (its divergences are in
// DET.Divergences, counted here) with what the board makes of it.
type Instance struct {
	transform.Status
	// State is [transform.Status.State] when the board answered.
	State string `json:"state"`
	// HeartbeatAge is how long ago, in seconds, the instance last
	// published its status, by this node's clock.
	HeartbeatAge    float64 `json:"heartbeat_age_s"`
	DivergenceCount int     `json:"divergence_count"`
}

// Snapshot is the newest snapshot of a generation, without its state, and
// what the log says of it: the claims at its position, which instances
// made claims that agree with it, and whether it is a restore point (a
// claim agrees and none contradicts it).
type Snapshot struct {
	InputSeq   uint64    `json:"input_seq"`
	Outputs    uint64    `json:"outputs"`
	Rejections uint64    `json:"rejections"`
	Version    string    `json:"version"`
	Hash       string    `json:"hash"`
	Taken      time.Time `json:"taken,omitzero"`
	// Object names the object holding a state too large for the bucket.
	Object         string   `json:"object,omitempty"`
	ClaimsESK      string   `json:"claims_esk"`
	Claims         []Claim  `json:"claims"`
	ConfirmedBy    []string `json:"confirmed_by"`
	ContradictedBy []string `json:"contradicted_by"`
	Confirmed      bool     `json:"confirmed"`
}

// Claim is one claim of the snapshot's position in the log.
type Claim struct {
	By     string `json:"by"`
	Hash   string `json:"hash"`
	Agrees bool   `json:"agrees"`
}

// Rejections is what a generation's rejections ESK holds: its count and
// the newest records, newest first.
type Rejections struct {
	ESK    string     `json:"esk"`
	Count  uint64     `json:"count"`
	Recent []Rejected `json:"recent"`
	Error  string     `json:"error,omitempty"` // why they could not be read
}

// Rejected is one input a DET rejected, as the runner recorded it at
// Position: the input and the step's error. A record that does not decode
// has its payload in Data instead.
type Rejected struct {
	Position httpapi.Position `json:"position"`
	Time     time.Time        `json:"time"` // when the log stored the record
	Input    httpapi.Position `json:"input"`
	Error    string           `json:"error"`
	httpapi.Data
}

// Sample is a DET at one status update: the time the newest of its
// instances published it, the outputs, their rate since the previous
// sample, the lag (as [DET]) and each instance's won outputs.
type Sample struct {
	Time             time.Time         `json:"t"`
	Outputs          uint64            `json:"outputs"`
	OutputsPerSecond float64           `json:"outputs_per_s"`
	Lag              uint64            `json:"lag"`
	Won              map[string]uint64 `json:"won"`
}
