package transport

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// userInfoWait bounds how long Open waits for the server to say what the
// connection's user may do.
const userInfoWait = 2 * time.Second

// mayCreateConsumers asks the server ($SYS.REQ.USER.INFO) whether the
// connection's user may create consumers on the log's stream. Users of a
// node with users may not (see [User.Permissions]); a Log of theirs reads
// with direct gets only. A server that does not answer, or answers
// without permissions, is taken to allow it.
func (l *Log) mayCreateConsumers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, userInfoWait)
	defer cancel()
	const subject = "$SYS.REQ.USER.INFO"
	gctx, release := l.denied.guard(ctx, "", subject)
	defer release()
	m, err := l.nc.RequestWithContext(gctx, subject, nil)
	if err != nil {
		return forbidden(gctx) == nil
	}
	var resp struct {
		Data struct {
			Permissions *struct {
				Publish *struct {
					Allow []string `json:"allow"`
					Deny  []string `json:"deny"`
				} `json:"publish"`
			} `json:"permissions"`
		} `json:"data"`
	}
	if json.Unmarshal(m.Data, &resp) != nil || resp.Data.Permissions == nil || resp.Data.Permissions.Publish == nil {
		return true
	}
	p := resp.Data.Permissions.Publish
	create := "$JS.API.CONSUMER.CREATE." + l.cfg.Stream + ".consumer.filter"
	if p.Allow != nil && !matchesAny(p.Allow, create) {
		return false
	}
	return !matchesAny(p.Deny, create)
}

func matchesAny(patterns []string, subject string) bool {
	for _, p := range patterns {
		if subjectMatches(p, subject) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether a NATS subject matches pattern, with the
// wildcards '*' (one token) and '>' (the rest).
func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}
