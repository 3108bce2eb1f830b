package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/detbus/detbus/transport"
)

// Request subjects of a store's read service (see [Store.Serve]).
const (
	SubjectTables     = "detbus.kv.tables"
	SubjectKeys       = "detbus.kv.keys"
	SubjectGet        = "detbus.kv.get"
	SubjectRejections = "detbus.kv.rejections"
)

// ReadRequest is the JSON body of a read request.
type ReadRequest struct {
	Table string `json:"table,omitempty"`
	Key   string `json:"key,omitempty"`
	After string `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// TablesReply answers [SubjectTables].
type TablesReply struct {
	Tables []TableInfo `json:"tables"`
	// UndeclaredRejected counts the ops rejected for naming no declared
	// table.
	UndeclaredRejected uint64 `json:"undeclared_rejected"`
}

// KeysReply answers [SubjectKeys].
type KeysReply struct {
	Keys []string `json:"keys"`
	More bool     `json:"more"`
}

// Serve answers read requests from this store's state on its log's
// connection, so that clients ask a running node instead of folding the
// log themselves:
//
//	detbus.kv.tables      {}                                      -> TablesReply
//	detbus.kv.keys        {"table":"users","after":"a","limit":10} -> KeysReply
//	detbus.kv.get         {"table":"users","key":"alice"}          -> Value
//	detbus.kv.rejections  {"table":"users"}                        -> []Rejection
//
// Each answer first catches up with the log ([Store.Sync]), so it
// reflects every op written before the request. Errors carry code 404
// for an unknown table or key, 400 for a bad request, 503 when the store
// cannot catch up. Stop the service with the returned function.
func (s *Store) Serve() (stop func() error, err error) {
	read := func(h func(ReadRequest) (any, error)) transport.Handler {
		return func(ctx context.Context, body []byte) (any, error) {
			var req ReadRequest
			if len(body) > 0 {
				if err := json.Unmarshal(body, &req); err != nil {
					return nil, fmt.Errorf("%w: the request is not JSON like {\"table\":\"users\",\"key\":\"alice\"}: %v", ErrInvalidOp, err)
				}
			}
			if err := s.Sync(ctx); err != nil {
				return nil, err
			}
			return h(req)
		}
	}
	code := func(err error) int {
		switch {
		case errors.Is(err, ErrNoTable), errors.Is(err, ErrNoKey):
			return 404
		case errors.Is(err, ErrInvalidOp):
			return 400
		case errors.Is(err, transport.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
			return 503
		}
		return 500
	}
	return s.log.Serve("detbus-kv", transport.ServiceVersion, "detbus kv store: reads from a node's folded state", []transport.Endpoint{
		{Name: "tables", Subject: SubjectTables, Code: code, Handle: read(func(ReadRequest) (any, error) {
			return TablesReply{Tables: s.Tables(), UndeclaredRejected: s.UndeclaredRejected()}, nil
		})},
		{Name: "keys", Subject: SubjectKeys, Code: code, Handle: read(func(r ReadRequest) (any, error) {
			keys, more, err := s.Keys(r.Table, r.After, r.Limit)
			return KeysReply{Keys: keys, More: more}, err
		})},
		{Name: "get", Subject: SubjectGet, Code: code, Handle: read(func(r ReadRequest) (any, error) {
			return s.Get(r.Table, r.Key)
		})},
		{Name: "rejections", Subject: SubjectRejections, Code: code, Handle: read(func(r ReadRequest) (any, error) {
			return s.Rejections(r.Table), nil
		})},
	})
}

// Remote reads a store that a node serves (see [Store.Serve]): the same
// reads as a [Store], each a request, answered once the node has caught
// up with the log. It holds no state; it is safe for concurrent use.
type Remote struct {
	log *transport.Log
}

// NewRemote returns a reader of the store served on log's NATS.
func NewRemote(log *transport.Log) *Remote { return &Remote{log: log} }

// Tables returns every table, as [Store.Tables], and the count of ops
// rejected for naming no declared table.
//
// Errors: transport.ErrNoService (wrapped) when no node serves the
// store; those of the node's store.
func (r *Remote) Tables(ctx context.Context) (TablesReply, error) {
	var out TablesReply
	return out, r.do(ctx, SubjectTables, ReadRequest{}, &out)
}

// Keys is [Store.Keys] asked of the node.
func (r *Remote) Keys(ctx context.Context, table, after string, limit int) ([]string, bool, error) {
	var out KeysReply
	err := r.do(ctx, SubjectKeys, ReadRequest{Table: table, After: after, Limit: limit}, &out)
	return out.Keys, out.More, err
}

// Get is [Store.Get] asked of the node.
func (r *Remote) Get(ctx context.Context, table, key string) (Value, error) {
	var out Value
	return out, r.do(ctx, SubjectGet, ReadRequest{Table: table, Key: key}, &out)
}

// Rejections is [Store.Rejections] asked of the node.
func (r *Remote) Rejections(ctx context.Context, table string) ([]Rejection, error) {
	var out []Rejection
	return out, r.do(ctx, SubjectRejections, ReadRequest{Table: table}, &out)
}

func (r *Remote) do(ctx context.Context, subject string, req ReadRequest, out any) error {
	err := r.log.Request(ctx, subject, req, out)
	var re *transport.RequestError
	if errors.As(err, &re) {
		for _, sentinel := range []error{ErrNoTable, ErrNoKey, ErrInvalidOp} {
			if strings.HasPrefix(re.Message, sentinel.Error()) {
				return fmt.Errorf("%w%s", sentinel, strings.TrimPrefix(re.Message, sentinel.Error()))
			}
		}
	}
	return err
}
