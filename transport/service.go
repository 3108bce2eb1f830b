package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/micro"
)

// ServiceName and ServiceVersion identify the request/reply service in
// `nats micro ls`.
const (
	ServiceName    = "detbus"
	ServiceVersion = "0.1.0"
)

// Service request subjects.
const (
	SubjectAppend        = "detbus.append"
	SubjectExistsOrWrite = "detbus.exists_or_write"
	SubjectGet           = "detbus.get"
	SubjectCount         = "detbus.count"
)

// ServiceRequest is the JSON body of a service request. Event is the
// event's JSON payload, stored byte for byte.
type ServiceRequest struct {
	ESK   string          `json:"esk"`
	Index *uint64         `json:"index,omitempty"`
	Event json.RawMessage `json:"event,omitempty"`
}

// ServiceReply is the JSON body of a successful reply. Index is set in
// the replies about one event (append, exists_or_write, get), index 0
// included, and left out of count replies.
type ServiceReply struct {
	ESK     string          `json:"esk"`
	Index   *uint64         `json:"index,omitempty"`
	Seq     uint64          `json:"seq,omitempty"`
	Outcome string          `json:"outcome,omitempty"` // "written" or "present"
	Equal   *bool           `json:"equal,omitempty"`
	Count   *uint64         `json:"count,omitempty"`
	Event   json.RawMessage `json:"event,omitempty"`
}

// ServiceError is the JSON body of an error reply; the NATS micro error
// headers carry the same text and a code.
type ServiceError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// NewService registers the log's request/reply service on its connection:
//
//	detbus.append          {"esk":"orders.eu","event":{...}}
//	detbus.exists_or_write {"esk":"orders.eu","index":3,"event":{...}}
//	detbus.get             {"esk":"orders.eu","index":3}
//	detbus.count           {"esk":"orders.eu"}
//
// Replies are [ServiceReply] JSON. Errors carry the micro error headers
// and a [ServiceError] body; codes are 400 (bad request), 403 (a write
// the authorizer refused, see [WithAuthorizer]; nothing written), 404 (no
// such index), 409 (index ahead of the count) and 503 (unavailable, the
// outcome of a write then unknown). The service writes with its log's
// rights, so on a node with users it must be given an authorizer
// ([AuthConfig.Authorizer]). The endpoints are subscribed on the server
// when NewService returns. Stop the service with its Stop method.
func NewService(l *Log, opts ...ServiceOption) (micro.Service, error) {
	var so serviceOptions
	for _, o := range opts {
		o(&so)
	}
	svc, err := micro.AddService(l.nc, micro.Config{
		Name:        ServiceName,
		Version:     ServiceVersion,
		Description: "detbus event log: append and conditional append by ESK and index",
	})
	if err != nil {
		return nil, fmt.Errorf("transport: register service: %w", err)
	}
	endpoints := []struct {
		name, subject string
		h             func(context.Context, ServiceRequest) (ServiceReply, error)
		needIndex     bool
		needEvent     bool
		writes        bool
	}{
		{"append", SubjectAppend, l.serveAppend, false, true, true},
		{"exists_or_write", SubjectExistsOrWrite, l.serveExistsOrWrite, true, true, true},
		{"get", SubjectGet, l.serveGet, true, false, false},
		{"count", SubjectCount, l.serveCount, false, false, false},
	}
	for _, e := range endpoints {
		handler := func(r micro.Request) {
			req, err := decodeServiceRequest(r.Data(), e.needIndex, e.needEvent)
			if err == nil && e.writes && so.authorize != nil {
				err = so.authorize(r.Reply(), req.ESK)
			}
			if err == nil {
				var rep ServiceReply
				ctx, cancel := l.withTimeout(context.Background())
				rep, err = e.h(ctx, req)
				cancel()
				if err == nil {
					_ = r.RespondJSON(rep)
					return
				}
			}
			code := serviceCode(err)
			body, _ := json.Marshal(ServiceError{Error: err.Error(), Code: code})
			_ = r.Error(code, err.Error(), body)
		}
		if err := svc.AddEndpoint(e.name, micro.HandlerFunc(handler), micro.WithEndpointSubject(e.subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("transport: add endpoint %s: %w", e.name, err)
		}
	}
	// The server has the endpoints' subscriptions once NewService returns,
	// so a request made right after, from any connection, finds them.
	if err := l.nc.Flush(); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("%w: register service: %v", ErrUnavailable, err)
	}
	return svc, nil
}

var errBadRequest = errors.New("transport: bad request")

// ServiceOption configures [NewService].
type ServiceOption func(*serviceOptions)

type serviceOptions struct {
	authorize func(reply, esk string) error
}

// WithAuthorizer has the service check every write request before it
// writes: authorize gets the request's reply subject, which tells who
// asked (each user of a node with users has inboxes of its own, see
// [InboxPrefix]), and the ESK; an error refuses the request (code 403)
// and nothing is written.
func WithAuthorizer(authorize func(reply, esk string) error) ServiceOption {
	return func(o *serviceOptions) { o.authorize = authorize }
}

// Authorizer is the check [WithAuthorizer] takes for the users of a: a
// write is done for a caller whose reply subject lies in the inboxes of an
// admin, or of a source whose sources match the ESK (and not under the
// reserved prefix), or in the default inboxes of the node's own
// connections (only admins may publish to the write endpoints at all).
// Anything else, a reply in no inbox (a consumer's delivery, a message
// with no reply) included, is refused with [ErrForbidden].
func (a AuthConfig) Authorizer() func(reply, esk string) error {
	return func(reply, esk string) error {
		if strings.HasPrefix(reply, "_INBOX.") {
			return nil
		}
		for _, u := range a.Users {
			if !strings.HasPrefix(reply, InboxPrefix(u.InboxID())+".") {
				continue
			}
			switch u.role() {
			case RoleAdmin:
				return nil
			case RoleSource:
				if esk != Reserved && !strings.HasPrefix(esk, Reserved+".") {
					for _, s := range u.Sources {
						if subjectMatches(s, esk) {
							return nil
						}
					}
				}
			}
			return &ForbiddenError{ESK: esk, Subject: reply, Reason: fmt.Sprintf("user %s may not write it", u.label())}
		}
		return &ForbiddenError{ESK: esk, Subject: reply, Reason: "the request does not come from a user's inbox"}
	}
}

func decodeServiceRequest(data []byte, needIndex, needEvent bool) (ServiceRequest, error) {
	var req ServiceRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf(`%w: body must be JSON like {"esk":"orders.eu","index":0,"event":{}}: %v`, errBadRequest, err)
	}
	if dec.More() {
		return req, fmt.Errorf("%w: trailing data after the JSON body", errBadRequest)
	}
	if err := ValidateESK(req.ESK); err != nil {
		return req, err
	}
	if needIndex && req.Index == nil {
		return req, fmt.Errorf(`%w: "index" is required`, errBadRequest)
	}
	if needEvent && len(req.Event) == 0 {
		return req, fmt.Errorf(`%w: "event" is required`, errBadRequest)
	}
	return req, nil
}

func serviceCode(err error) string {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, ErrInvalidESK), errors.Is(err, ErrPayloadTooLarge):
		return "400"
	case errors.Is(err, ErrNotFound):
		return "404"
	case errors.Is(err, ErrIndexAhead):
		return "409"
	case errors.Is(err, ErrUnavailable):
		return "503"
	case errors.Is(err, ErrForbidden):
		return "403"
	}
	return "500"
}

func (l *Log) serveAppend(ctx context.Context, req ServiceRequest) (ServiceReply, error) {
	pos, err := l.Write(ctx, req.ESK, req.Event)
	if err != nil {
		return ServiceReply{}, err
	}
	return ServiceReply{ESK: pos.ESK, Index: &pos.Index, Seq: pos.Seq, Outcome: Written.String()}, nil
}

func (l *Log) serveExistsOrWrite(ctx context.Context, req ServiceRequest) (ServiceReply, error) {
	r, err := l.ExistsOrWrite(ctx, req.ESK, *req.Index, req.Event)
	if err != nil {
		return ServiceReply{}, err
	}
	return ServiceReply{ESK: r.ESK, Index: &r.Index, Seq: r.Seq, Outcome: r.Outcome.String(), Equal: &r.Equal}, nil
}

func (l *Log) serveGet(ctx context.Context, req ServiceRequest) (ServiceReply, error) {
	ev, err := l.Get(ctx, req.ESK, *req.Index)
	if err != nil {
		return ServiceReply{}, err
	}
	rep := ServiceReply{ESK: ev.ESK, Index: &ev.Index, Seq: ev.Seq}
	if json.Valid(ev.Data) {
		rep.Event = ev.Data
	} else {
		rep.Event, _ = json.Marshal(ev.Data) // non-JSON payloads as base64
	}
	return rep, nil
}

func (l *Log) serveCount(ctx context.Context, req ServiceRequest) (ServiceReply, error) {
	n, err := l.Count(ctx, req.ESK)
	if err != nil {
		return ServiceReply{}, err
	}
	return ServiceReply{ESK: req.ESK, Count: &n}, nil
}
