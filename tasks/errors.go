package tasks

import "errors"

var (
	// ErrInvalid is wrapped by errors about a bad argument to a write or a
	// read: a queue name that makes no valid ESK, an operation the task
	// machine would reject as malformed (the error gives its reason).
	ErrInvalid = errors.New("tasks: invalid argument")

	// ErrInvalidOption is wrapped by errors from options that do not
	// validate.
	ErrInvalidOption = errors.New("tasks: invalid option")

	// ErrNoQueue is returned by reads of a queue that has not been
	// created (as far as the fold has applied).
	ErrNoQueue = errors.New("tasks: no such queue")

	// ErrNoTask is returned by reads of a task the queue has never had.
	ErrNoTask = errors.New("tasks: no such task")

	// ErrOutcomeNotKept is returned by [Client.Outcome] for an event whose
	// outcome the client no longer keeps, or that is not a task event.
	ErrOutcomeNotKept = errors.New("tasks: outcome not kept")

	// ErrClosed is returned by waits and writes on a closed [Client].
	ErrClosed = errors.New("tasks: client closed")

	// ErrLeaseLost is the cause of a handler's context being cancelled
	// because the worker no longer holds the task's lease: it expired by
	// the worker's clock, a heartbeat was refused, or the fold shows the
	// task cancelled or claimed by another attempt. Read it with
	// context.Cause.
	ErrLeaseLost = errors.New("tasks: lease lost")

	// ErrShutdown is the cause of a handler's context being cancelled
	// because the worker's shutdown deadline passed.
	ErrShutdown = errors.New("tasks: worker shut down")
)
