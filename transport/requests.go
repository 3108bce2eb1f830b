package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Request endpoints let a node answer questions about state it has folded
// (a kv store's tables, a task queue), so that a command-line client asks
// instead of folding the log itself. They are NATS micro services: any
// NATS client can call them (`nats req detbus.kv.get '{...}'`), and
// `nats micro ls` lists them.

// Handler answers one request: the reply is encoded as JSON. An error
// reply carries a code from [Endpoint.Code] and the error's text.
type Handler func(ctx context.Context, body []byte) (any, error)

// Endpoint is one request subject of a service.
type Endpoint struct {
	Name    string // the endpoint's name in `nats micro info`
	Subject string // the subject it answers on
	Handle  Handler
	// Code maps a handler's error to an HTTP-like status code: 400 bad
	// request, 404 not found, 409 conflict, 503 unavailable (default:
	// 404 for ErrNotFound, 400 for ErrInvalidOption, 503 for
	// ErrUnavailable, 500 otherwise).
	Code func(error) int
}

// RequestError is the error of a request that a service answered with an
// error.
type RequestError struct {
	Subject string
	Code    int
	Message string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("%s answered %d: %s", e.Subject, e.Code, e.Message)
}

// Unwrap maps the code to the package's errors: 404 to [ErrNotFound], 400
// to [ErrInvalidOption], 503 to [ErrUnavailable].
func (e *RequestError) Unwrap() error {
	switch e.Code {
	case 404:
		return ErrNotFound
	case 400:
		return ErrInvalidOption
	case 503:
		return ErrUnavailable
	}
	return nil
}

// ErrNoService is wrapped when no node serves a request's subject.
var ErrNoService = errors.New("transport: no node serves the request")

// Serve registers a service of endpoints on the log's connection. They are
// subscribed on the server when Serve returns. Stop it with the returned
// function. Handlers run one request at a time per endpoint, each with
// the log's timeout.
func (l *Log) Serve(name, version, description string, endpoints []Endpoint) (stop func() error, err error) {
	svc, err := micro.AddService(l.nc, micro.Config{Name: name, Version: version, Description: description})
	if err != nil {
		return nil, fmt.Errorf("transport: register service %s: %w", name, err)
	}
	for _, e := range endpoints {
		code := e.Code
		if code == nil {
			code = defaultCode
		}
		handle := e.Handle
		h := func(r micro.Request) {
			ctx, cancel := l.withTimeout(context.Background())
			defer cancel()
			rep, err := handle(ctx, r.Data())
			if err == nil {
				var body []byte
				if body, err = json.Marshal(rep); err == nil {
					_ = r.Respond(body)
					return
				}
			}
			c := strconv.Itoa(code(err))
			body, _ := json.Marshal(ServiceError{Error: err.Error(), Code: c})
			_ = r.Error(c, err.Error(), body)
		}
		if err := svc.AddEndpoint(e.Name, micro.HandlerFunc(h), micro.WithEndpointSubject(e.Subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("transport: add endpoint %s: %w", e.Name, err)
		}
	}
	if err := l.nc.Flush(); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("%w: register service %s: %v", ErrUnavailable, name, err)
	}
	return svc.Stop, nil
}

func defaultCode(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return 404
	case errors.Is(err, ErrInvalidOption), errors.Is(err, ErrInvalidESK):
		return 400
	case errors.Is(err, ErrUnavailable):
		return 503
	}
	return 500
}

// Request sends body, encoded as JSON, to subject and decodes the reply
// into out.
//
// Errors: [ErrNoService] (wrapped) when nothing answers the subject; a
// [*RequestError] when the service answered with an error;
// [ErrUnavailable] when NATS does not answer in time.
func (l *Log) Request(ctx context.Context, subject string, body, out any) error {
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("transport: request to %s: %w", subject, err)
	}
	m, err := l.nc.RequestWithContext(ctx, subject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: %s", ErrNoService, subject)
	case err != nil:
		return fmt.Errorf("%w: request to %s: %v", ErrUnavailable, subject, err)
	}
	if c := m.Header.Get(micro.ErrorCodeHeader); c != "" {
		code, _ := strconv.Atoi(c)
		return &RequestError{Subject: subject, Code: code, Message: m.Header.Get(micro.ErrorHeader)}
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("transport: reply from %s: %w", subject, err)
	}
	return nil
}
