// Package claims confirms snapshots against the log. Whoever saves a
// snapshot of state folded from the log appends a claim to the log first:
// the state's hash at its stream position, on an ESK that only the
// snapshot's rightful writers may write (the node's own under the
// reserved prefix "detbus", see transport.Reserved). A reader then trusts
// a snapshot from a bucket only when the log holds a claim of its hash at
// its position and none of another: a user who may write the bucket but
// not that ESK cannot forge a restore point.
package claims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/detbus/detbus/transport"
)

// ErrUnconfirmed is wrapped when the log holds no claim of a snapshot, or
// a claim that contradicts it.
var ErrUnconfirmed = errors.New("claims: snapshot not confirmed by the log")

// Claim is one claim: who made it, and the hash of the state it says the
// fold reached.
type Claim struct {
	By   string `json:"by"`
	Hash string `json:"hash"`
}

// ESK is the ESK of the claims of kind's snapshots at stream position
// seq: "detbus.checkpoints.<kind>.<seq>".
func ESK(kind string, seq uint64) string {
	return transport.Reserved + ".checkpoints." + kind + "." + strconv.FormatUint(seq, 10)
}

// Make appends a claim of hash by by on esk.
func Make(ctx context.Context, l *transport.Log, esk, by, hash string) error {
	data, _ := json.Marshal(Claim{By: by, Hash: hash})
	if _, err := l.Publish(ctx, esk, data); err != nil {
		return fmt.Errorf("claims: claim %s: %w", esk, err)
	}
	return nil
}

// maxRead bounds the claims of one position a check reads.
const maxRead = 64

// Check returns nil when esk holds at least one claim and every claim of
// it says hash, and otherwise an error wrapping [ErrUnconfirmed] (or the
// log's error).
func Check(ctx context.Context, l *transport.Log, esk, hash string) error {
	n, err := l.Count(ctx, esk)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: no claim in %s", ErrUnconfirmed, esk)
	}
	for i := range min(n, maxRead) {
		ev, err := l.Get(ctx, esk, i)
		if err != nil {
			return err
		}
		var c Claim
		if err := json.Unmarshal(ev.Data, &c); err != nil || c.Hash != hash {
			return fmt.Errorf("%w: claim %d in %s (by %q) says %s, the snapshot %s", ErrUnconfirmed, i, esk, c.By, c.Hash, hash)
		}
	}
	return nil
}
