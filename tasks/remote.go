package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// Request subjects of a client's read service (see [Client.Serve]).
const (
	SubjectQueues     = "detbus.tasks.queues"
	SubjectList       = "detbus.tasks.list"
	SubjectShow       = "detbus.tasks.show"
	SubjectRejections = "detbus.tasks.rejections"
)

// ReadRequest is the JSON body of a read request.
type ReadRequest struct {
	Queue  string          `json:"queue,omitempty"`
	ID     string          `json:"id,omitempty"`
	States []machine.State `json:"states,omitempty"`
}

// RejectionsReply answers [SubjectRejections].
type RejectionsReply struct {
	Queue     QueueInfo   `json:"queue"`
	Malformed []Rejection `json:"malformed"`
	Refused   []Rejection `json:"refused"`
}

// Serve answers read requests from this client's folded state on its
// log's connection, so that other clients ask a running node instead of
// folding every queue themselves:
//
//	detbus.tasks.queues      {}                                   -> []QueueInfo
//	detbus.tasks.list        {"queue":"emails","states":["dead"]} -> []machine.Task
//	detbus.tasks.show        {"queue":"emails","id":"t1"}         -> machine.Task
//	detbus.tasks.rejections  {"queue":"emails"}                   -> RejectionsReply
//
// Each answer first catches up with the log ([Client.Sync]). Errors carry
// code 404 for an unknown queue or task, 400 for a bad request, 503 when
// the client cannot catch up. Stop the service with the returned
// function.
func (c *Client) Serve() (stop func() error, err error) {
	read := func(h func(ReadRequest) (any, error)) transport.Handler {
		return func(ctx context.Context, body []byte) (any, error) {
			var req ReadRequest
			if len(body) > 0 {
				if err := json.Unmarshal(body, &req); err != nil {
					return nil, fmt.Errorf("%w: the request is not JSON like {\"queue\":\"emails\",\"id\":\"t1\"}: %v", ErrInvalid, err)
				}
			}
			if err := c.Sync(ctx); err != nil {
				return nil, err
			}
			return h(req)
		}
	}
	code := func(err error) int {
		switch {
		case errors.Is(err, ErrNoQueue), errors.Is(err, ErrNoTask):
			return 404
		case errors.Is(err, ErrInvalid):
			return 400
		case errors.Is(err, transport.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
			return 503
		}
		return 500
	}
	return c.log.Serve("detbus-tasks", transport.ServiceVersion, "detbus task queues: reads from a node's folded state", []transport.Endpoint{
		{Name: "queues", Subject: SubjectQueues, Code: code, Handle: read(func(ReadRequest) (any, error) {
			return c.Queues(), nil
		})},
		{Name: "list", Subject: SubjectList, Code: code, Handle: read(func(r ReadRequest) (any, error) {
			return c.List(r.Queue, r.States...)
		})},
		{Name: "show", Subject: SubjectShow, Code: code, Handle: read(func(r ReadRequest) (any, error) {
			return c.Show(r.Queue, r.ID)
		})},
		{Name: "rejections", Subject: SubjectRejections, Code: code, Handle: read(func(r ReadRequest) (any, error) {
			info, err := c.Queue(r.Queue)
			if err != nil {
				return nil, err
			}
			bad, refused, err := c.Rejections(r.Queue)
			return RejectionsReply{Queue: info, Malformed: bad, Refused: refused}, err
		})},
	})
}

// Remote reads the task queues a node serves (see [Client.Serve]): the
// same reads as a [Client], each a request answered once the node has
// caught up with the log. It holds no state; it is safe for concurrent
// use.
type Remote struct {
	log *transport.Log
}

// NewRemote returns a reader of the queues served on log's NATS.
func NewRemote(log *transport.Log) *Remote { return &Remote{log: log} }

// Queues is [Client.Queues] asked of the node.
//
// Errors: transport.ErrNoService (wrapped) when no node serves the
// queues; those of the node's client.
func (r *Remote) Queues(ctx context.Context) ([]QueueInfo, error) {
	var out []QueueInfo
	return out, r.do(ctx, SubjectQueues, ReadRequest{}, &out)
}

// List is [Client.List] asked of the node.
func (r *Remote) List(ctx context.Context, queue string, states ...machine.State) ([]machine.Task, error) {
	var out []machine.Task
	return out, r.do(ctx, SubjectList, ReadRequest{Queue: queue, States: states}, &out)
}

// Show is [Client.Show] asked of the node.
func (r *Remote) Show(ctx context.Context, queue, id string) (machine.Task, error) {
	var out machine.Task
	return out, r.do(ctx, SubjectShow, ReadRequest{Queue: queue, ID: id}, &out)
}

// Rejections is [Client.Rejections] asked of the node, with the queue's
// summary.
func (r *Remote) Rejections(ctx context.Context, queue string) (RejectionsReply, error) {
	var out RejectionsReply
	return out, r.do(ctx, SubjectRejections, ReadRequest{Queue: queue}, &out)
}

func (r *Remote) do(ctx context.Context, subject string, req ReadRequest, out any) error {
	err := r.log.Request(ctx, subject, req, out)
	var re *transport.RequestError
	if errors.As(err, &re) {
		for _, sentinel := range []error{ErrNoQueue, ErrNoTask, ErrInvalid} {
			if strings.HasPrefix(re.Message, sentinel.Error()) {
				return fmt.Errorf("%w%s", sentinel, strings.TrimPrefix(re.Message, sentinel.Error()))
			}
		}
	}
	return err
}
