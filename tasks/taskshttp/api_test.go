package taskshttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/tasks/taskshttp"
)

const token = "taskshttp-test-token-0123"

// TestQueues: a queue is created through the API with the machine's
// defaults for absent fields, re-creating it with the same config writes
// nothing, another config is a conflict, and bad fields are 400s naming
// the machine's reason.
func TestQueues(t *testing.T) {
	e := newEnv(t, envConfig{})
	if got := e.do("GET", "/api/tasks/queues", "").Want(t, http.StatusOK); len(got.List("queues")) != 0 || got.Num("applied") != 0 {
		t.Fatalf("a new node lists %s", got.Raw)
	}
	r := e.do("POST", "/api/tasks/queues", `{"name":"emails","lease":"10s","backoff":{"factor":3}}`).Want(t, http.StatusCreated)
	if r.Str("queue.name") != "emails" || r.At("created") != true || r.Str("position.esk") != "tasks.emails" ||
		r.Str("queue.config.lease") != "10s" || r.Num("queue.config.max_attempts") != 5 ||
		r.Str("queue.config.backoff.initial") != "1s" || r.Num("queue.config.backoff.factor") != 3 || r.Str("queue.config.backoff.max") != "1m0s" {
		t.Fatalf("create: %s", r.Raw)
	}
	seq := r.Num("position.seq")
	// The same config after defaults: nothing written.
	r = e.do("POST", "/api/tasks/queues", `{"name":"emails","lease":"10000ms","backoff":{"factor":3,"initial":"1s"},"max_attempts":5}`).Want(t, http.StatusOK)
	if r.At("created") != false || r.At("position") != nil {
		t.Fatalf("re-create: %s", r.Raw)
	}
	e.do("POST", "/api/tasks/queues", `{"name":"emails","lease":"20s"}`).Want(t, http.StatusConflict, "already created with another config", "lease 10s")
	e.do("POST", "/api/tasks/queues", `{"name":"emails","lease":"soon"}`).Want(t, http.StatusBadRequest, "lease must be a duration")
	e.do("POST", "/api/tasks/queues", `{"name":"emails","leases":"1s"}`).Want(t, http.StatusBadRequest, `unknown field \"leases\"`)
	e.do("POST", "/api/tasks/queues", `{"name":"emails","op":"enqueue"}`).Want(t, http.StatusBadRequest, `unknown field \"op\"`)
	e.do("POST", "/api/tasks/queues", `{"lease":"1s"}`).Want(t, http.StatusBadRequest, `missing \"name\"`)
	e.do("POST", "/api/tasks/queues", `{"name":7}`).Want(t, http.StatusBadRequest, `\"name\" must be a string`)
	e.do("POST", "/api/tasks/queues", `{"name":"a b"}`).Want(t, http.StatusBadRequest, "queue name")
	e.do("POST", "/api/tasks/queues", `{"name":"a.*"}`).Want(t, http.StatusBadRequest, "queue name")
	e.do("POST", "/api/tasks/queues", `{"name":"x",}`).Want(t, http.StatusBadRequest, "byte offset")
	e.do("POST", "/api/tasks/queues", `[1]`).Want(t, http.StatusBadRequest, "malformed JSON body")
	e.do("POST", "/api/tasks/queues", `null`).Want(t, http.StatusBadRequest, "want a JSON object")
	e.do("POST", "/api/tasks/queues", "").Want(t, http.StatusBadRequest, "empty request body")

	r = e.do("GET", "/api/tasks/queues", "").Want(t, http.StatusOK)
	qs := r.List("queues")
	if len(qs) != 1 || qs[0]["name"] != "emails" || qs[0]["created"] != true || r.Num("applied") != seq {
		t.Fatalf("queues: %s", r.Raw)
	}
	r = e.do("GET", "/api/tasks/queues/emails", "").Want(t, http.StatusOK)
	for _, s := range []string{"pending", "claimed", "completed", "dead", "cancelled"} {
		if n, ok := r.At("tasks." + s).(float64); !ok || n != 0 {
			t.Fatalf("count of %s: %s", s, r.Raw)
		}
	}
	if r.Num("events") != 1 || r.Num("total") != 0 || r.Num("rejected") != 0 {
		t.Fatalf("queue: %s", r.Raw)
	}
	e.do("GET", "/api/tasks/queues/nope", "").Want(t, http.StatusNotFound, "no such queue")
	if got := e.do("GET", "/api/tasks/status", "").Want(t, http.StatusOK); got.Num("applied") != seq {
		t.Fatalf("status: %s", got.Raw)
	}
}

// TestEnqueueAndList: tasks enqueued through the API and the SDK are
// listed in enqueue order, page by page and by state, and read whole.
func TestEnqueueAndList(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.do("POST", "/api/tasks/queues", `{"name":"q"}`).Want(t, http.StatusCreated)
	r := e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"a","payload":{"to": "x@y"},"priority":2}`).Want(t, http.StatusCreated)
	if r.At("created") != true || r.Str("task.id") != "a" || r.Str("task.state") != "pending" || r.Num("task.priority") != 2 ||
		r.Str("position.esk") != "tasks.q" || r.Num("position.index") != 1 {
		t.Fatalf("enqueue: %s", r.Raw)
	}
	if p, _ := json.Marshal(r.At("task.payload")); string(p) != `{"to":"x@y"}` {
		t.Fatalf("payload %s", p)
	}
	// Idempotent by id: the existing task, nothing written.
	r = e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"a","payload":"other"}`).Want(t, http.StatusOK)
	if r.At("created") != false || r.At("position") != nil || r.Num("task.priority") != 2 {
		t.Fatalf("duplicate enqueue: %s", r.Raw)
	}
	before := time.Now()
	r = e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"later","delay":"1h"}`).Want(t, http.StatusCreated)
	due, err := time.Parse(time.RFC3339Nano, r.Str("task.not_before"))
	if err != nil || due.Before(before.Add(time.Hour)) || due.After(time.Now().Add(time.Hour)) {
		t.Fatalf("delayed task due %q (%v): %s", r.Str("task.not_before"), err, r.Raw)
	}
	r = e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"fixed","not_before":"2030-01-02T03:04:05Z"}`).Want(t, http.StatusCreated)
	if r.Str("task.not_before") != "2030-01-02T03:04:05Z" || r.At("task.payload") != nil || r.At("task.lease_until") != nil {
		t.Fatalf("task due at a time: %s", r.Raw)
	}
	for i := range 4 {
		if _, err := e.client.Enqueue(ctxT(t), "q", tasks.NewTask{ID: fmt.Sprint("sdk", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.client.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	all := []string{"a", "later", "fixed", "sdk0", "sdk1", "sdk2", "sdk3"}
	if got := e.do("GET", "/api/tasks/queues/q/tasks", "").Want(t, http.StatusOK); !slices.Equal(ids(got), all) || got.At("more") != false || got.At("next") != nil {
		t.Fatalf("all tasks: %s", got.Raw)
	}
	// Pages of 3, each after the previous page's next.
	var paged []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatalf("too many pages: %v", paged)
		}
		r := e.do("GET", "/api/tasks/queues/q/tasks?limit=3"+after, "").Want(t, http.StatusOK)
		paged = append(paged, ids(r)...)
		if r.At("more") != true {
			break
		}
		after = fmt.Sprintf("&after=%d", int(r.Num("next")))
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("pages: %v", paged)
	}

	// Cancel one, then filter by state.
	e.do("POST", "/api/tasks/queues/q/tasks/sdk1/cancel", "").Want(t, http.StatusOK, `"outcome":"cancelled"`)
	if got := e.do("GET", "/api/tasks/queues/q/tasks?state=cancelled", "").Want(t, http.StatusOK); !slices.Equal(ids(got), []string{"sdk1"}) {
		t.Fatalf("cancelled: %s", got.Raw)
	}
	if got := e.do("GET", "/api/tasks/queues/q/tasks?state=cancelled,pending&limit=2", "").Want(t, http.StatusOK); !slices.Equal(ids(got), []string{"a", "later"}) || got.At("more") != true {
		t.Fatalf("cancelled or pending: %s", got.Raw)
	}
	r = e.do("GET", "/api/tasks/queues/q", "").Want(t, http.StatusOK)
	if r.Num("tasks.pending") != 6 || r.Num("tasks.cancelled") != 1 || r.Num("total") != 7 {
		t.Fatalf("counts: %s", r.Raw)
	}

	// Bad input.
	e.do("GET", "/api/tasks/queues/q/tasks?state=done", "").Want(t, http.StatusBadRequest, `state \"done\"`)
	e.do("GET", "/api/tasks/queues/q/tasks?limit=0", "").Want(t, http.StatusBadRequest, "limit")
	e.do("GET", "/api/tasks/queues/q/tasks?limit=1001", "").Want(t, http.StatusBadRequest, "limit")
	e.do("GET", "/api/tasks/queues/q/tasks?after=x", "").Want(t, http.StatusBadRequest, "enqueue_index")
	e.do("GET", "/api/tasks/queues/nope/tasks", "").Want(t, http.StatusNotFound, "no such queue")
	e.do("GET", "/api/tasks/queues/q/tasks/nope", "").Want(t, http.StatusNotFound, "no such task")
	e.do("POST", "/api/tasks/queues/nope/tasks", `{"id":"x"}`).Want(t, http.StatusNotFound, "no such queue")
	e.do("POST", "/api/tasks/queues/q/tasks", `{"payload":1}`).Want(t, http.StatusBadRequest, `missing \"id\"`)
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"x","delay":"1s","not_before":"2030-01-02T03:04:05Z"}`).Want(t, http.StatusBadRequest, "not both")
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"x","delay":"-1s"}`).Want(t, http.StatusBadRequest, "delay")
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"x","not_before":"1969-01-01T00:00:00Z"}`).Want(t, http.StatusBadRequest, "from 1970")
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"x","not_before":"tomorrow"}`).Want(t, http.StatusBadRequest, "malformed JSON body")
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"x","priority":"high"}`).Want(t, http.StatusBadRequest, `field \"priority\"`)
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"x","prio":1}`).Want(t, http.StatusBadRequest, "unknown field")
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"x","payload":{"a":}}`).Want(t, http.StatusBadRequest, "byte offset")
}

// TestTaskIDsInPaths: queue names and task ids with reserved characters
// travel escaped in the path.
func TestTaskIDsInPaths(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.do("POST", "/api/tasks/queues", `{"name":"mail/eu.high"}`).Want(t, http.StatusCreated)
	e.do("POST", "/api/tasks/queues/mail%2Feu.high/tasks", `{"id":"a/b?c#d e"}`).Want(t, http.StatusCreated)
	r := e.do("GET", "/api/tasks/queues/mail%2Feu.high/tasks/a%2Fb%3Fc%23d%20e", "").Want(t, http.StatusOK)
	if r.Str("id") != "a/b?c#d e" || r.Str("queue") != "mail/eu.high" {
		t.Fatalf("task: %s", r.Raw)
	}
	e.do("POST", "/api/tasks/queues/mail%2Feu.high/tasks/a%2Fb%3Fc%23d%20e/cancel", "").Want(t, http.StatusOK, `"state":"cancelled"`)
}

// TestWorkerLifecycle: the API shows a worker's claim, lease and result,
// and a dead letter's last error; cancel and retry follow the machine's
// rules, refusing at once what the state does not allow.
func TestWorkerLifecycle(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.do("POST", "/api/tasks/queues", `{"name":"jobs","max_attempts":1}`).Want(t, http.StatusCreated)
	release := make(chan struct{})
	w, err := tasks.NewWorker(e.client, "jobs", func(ctx context.Context, task tasks.Task) error {
		switch task.ID {
		case "slow":
			select {
			case <-release:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			return nil
		case "bad":
			return errors.New("smtp timeout")
		}
		return nil
	}, tasks.WorkerOptions{ID: "w1", Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	e.do("POST", "/api/tasks/queues/jobs/tasks", `{"id":"slow","payload":[1,2]}`).Want(t, http.StatusCreated)
	r := e.waitTask("jobs", "slow", "claimed")
	lease, err := time.Parse(time.RFC3339Nano, r.Str("lease_until"))
	if err != nil || r.Str("worker") != "w1" || r.Num("attempts") != 1 || r.Str("lease") != "30s" || time.Until(lease) < 20*time.Second {
		t.Fatalf("claimed: %s", r.Raw)
	}
	e.do("POST", "/api/tasks/queues/jobs/tasks/slow/retry", "").Want(t, http.StatusConflict, "is claimed, not dead")
	close(release)
	r = e.waitTask("jobs", "slow", "completed")
	if r.At("lease_until") != nil {
		t.Fatalf("completed: %s", r.Raw)
	}
	e.do("POST", "/api/tasks/queues/jobs/tasks/slow/cancel", "").Want(t, http.StatusConflict, "is completed")

	e.do("POST", "/api/tasks/queues/jobs/tasks", `{"id":"bad"}`).Want(t, http.StatusCreated)
	r = e.waitTask("jobs", "bad", "dead")
	if r.Str("last_error") != "smtp timeout" || r.Num("attempts") != 1 {
		t.Fatalf("dead: %s", r.Raw)
	}
	if got := e.do("GET", "/api/tasks/queues/jobs/tasks?state=dead", "").Want(t, http.StatusOK); !slices.Equal(ids(got), []string{"bad"}) || got.List("tasks")[0]["last_error"] != "smtp timeout" {
		t.Fatalf("dead letters: %s", got.Raw)
	}
	r = e.do("POST", "/api/tasks/queues/jobs/tasks/bad/retry", "").Want(t, http.StatusOK)
	if r.Str("outcome") != "requeued" || r.Str("position.esk") != "tasks.jobs" {
		t.Fatalf("retry: %s", r.Raw)
	}
	// It runs again, and fails again.
	testnats.WaitFor(t, 20*time.Second, "the retried task dead again", func() error {
		task, err := e.client.Show("jobs", "bad")
		if err != nil || task.State != machine.StateDead || task.Attempts != 1 {
			return fmt.Errorf("%+v, %v", task, err)
		}
		if st := w.Stats(); st.Failed < 2 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	r = e.do("POST", "/api/tasks/queues/jobs/tasks/bad/cancel", "").Want(t, http.StatusOK, `"outcome":"cancelled"`, `"state":"cancelled"`)
	e.do("POST", "/api/tasks/queues/jobs/tasks/bad/cancel", "").Want(t, http.StatusOK, `"outcome":"duplicate"`)
	e.do("POST", "/api/tasks/queues/jobs/tasks/nope/cancel", "").Want(t, http.StatusNotFound, "no such task")
	e.do("POST", "/api/tasks/queues/nope/tasks/bad/retry", "").Want(t, http.StatusNotFound, "no such queue")

	r = e.do("GET", "/api/tasks/queues/jobs/tasks/slow", "").Want(t, http.StatusOK)
	if p, _ := json.Marshal(r.At("payload")); string(p) != "[1,2]" || r.At("result") != nil {
		t.Fatalf("completed task: %s", r.Raw)
	}
}

// TestRejections: events the machine rejects, written by anyone, are
// listed with their reason and payload and counted; a queue written to
// before its creation is listed, not created.
func TestRejections(t *testing.T) {
	e := newEnv(t, envConfig{})
	write := func(esk, data string) {
		t.Helper()
		if _, err := e.log.Write(ctxT(t), esk, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	write("tasks.early", `{"op":"enqueue","id":"t1"}`)
	write("tasks.q", `{"op":"create_queue"}`)
	write("tasks.q", `{"op":"fly","id":"t1"}`)
	write("tasks.q", `{"op":"complete","id":"ghost","worker":"w","attempt":1}`)
	write("tasks.q", "\xff\xfe")
	if err := e.client.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/api/tasks/queues", "").Want(t, http.StatusOK)
	qs := r.List("queues")
	if len(qs) != 2 || qs[0]["name"] != "early" || qs[0]["created"] != false || qs[0]["config"] != nil || qs[0]["rejected"] != 1.0 ||
		qs[1]["name"] != "q" || qs[1]["rejected"] != 3.0 || qs[1]["malformed"] != 2.0 || qs[1]["refused"] != 1.0 {
		t.Fatalf("queues: %s", r.Raw)
	}
	e.do("GET", "/api/tasks/queues/early/tasks", "").Want(t, http.StatusNotFound, "not created")
	e.do("POST", "/api/tasks/queues/early/tasks", `{"id":"t2"}`).Want(t, http.StatusNotFound, "not created")
	e.do("GET", "/api/tasks/queues/early/rejections", "").Want(t, http.StatusOK, "queue not created")

	r = e.do("GET", "/api/tasks/queues/q/rejections", "").Want(t, http.StatusOK)
	rej := r.List("rejections")
	if len(rej) != 3 || r.Num("malformed") != 2 || r.Num("refused") != 1 {
		t.Fatalf("rejections: %s", r.Raw)
	}
	if rej[0]["reason"] != `unknown op "fly"` || rej[0]["malformed"] != true || rej[0]["data"] != `{"op":"fly","id":"t1"}` || rej[0]["op"] != "fly" {
		t.Fatalf("first: %v", rej[0])
	}
	if rej[1]["reason"] != `no task "ghost"` || rej[1]["malformed"] != false || rej[1]["time"] == nil {
		t.Fatalf("second: %v", rej[1])
	}
	if rej[2]["data_base64"] != "//4=" || rej[2]["malformed"] != true {
		t.Fatalf("third: %v", rej[2])
	}
	if p := rej[2]["position"].(map[string]any); p["esk"] != "tasks.q" || p["index"] != 3.0 {
		t.Fatalf("third's position: %v", p)
	}
	e.do("GET", "/api/tasks/queues/nope/rejections", "").Want(t, http.StatusNotFound, "no such queue")
}

// TestHTTPErrors: paths and methods not served, bodies too large,
// cross-origin writes, the token, a closed client and bad options.
func TestHTTPErrors(t *testing.T) {
	e := newEnv(t, envConfig{opts: taskshttp.Options{MaxBody: 64, Timeout: 5 * time.Second}, token: token})
	auth := "Authorization: Bearer " + token
	e.do("GET", "/api/tasks/queues", "").Want(t, http.StatusUnauthorized, "token")
	e.do("GET", "/api/tasks/queues", "", "Authorization: Bearer wrong-wrong-wrong-wrong").Want(t, http.StatusUnauthorized)
	e.do("POST", "/api/tasks/queues", `{"name":"q"}`, auth).Want(t, http.StatusCreated)
	e.do("GET", "/api/tasks/nope", "", auth).Want(t, http.StatusNotFound, "no such path")
	r := e.do("DELETE", "/api/tasks/queues/q", "", auth).Want(t, http.StatusMethodNotAllowed, "GET")
	if !strings.Contains(r.Header.Get("Allow"), "GET") {
		t.Fatalf("Allow %q", r.Header.Get("Allow"))
	}
	e.do("GET", "/api/tasks/queues/q/tasks/t1/cancel", "", auth).Want(t, http.StatusMethodNotAllowed, "POST")
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"t1","payload":"`+strings.Repeat("x", 100)+`"}`, auth).Want(t, http.StatusRequestEntityTooLarge, "larger than 64 bytes")
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"t1"}`, auth, "Sec-Fetch-Site: cross-site").Want(t, http.StatusForbidden, "cross-origin")
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"t1"}`, auth, "Sec-Fetch-Site: same-origin").Want(t, http.StatusCreated)

	// A write out of time is 503 with a JSON error. With a 1ns timeout the
	// event is not written at all, so no position is checked here.
	hurried, err := taskshttp.New(e.client, taskshttp.Options{Timeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	hurried.ServeHTTP(rec, httptest.NewRequest("POST", "/api/tasks/queues/q/tasks", strings.NewReader(`{"id":"t9"}`)))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"error"`) {
		t.Fatalf("a write out of time: %d %s", rec.Code, rec.Body)
	}

	// A closed client still reads but cannot write.
	e.client.Close()
	e.do("GET", "/api/tasks/queues/q/tasks/t1", "", auth).Want(t, http.StatusOK)
	e.do("POST", "/api/tasks/queues/q/tasks", `{"id":"t2"}`, auth).Want(t, http.StatusServiceUnavailable, "closed")

	if _, err := taskshttp.New(nil, taskshttp.Options{}); !errors.Is(err, taskshttp.ErrInvalidOption) {
		t.Fatalf("nil client: %v", err)
	}
	if _, err := taskshttp.New(e.client, taskshttp.Options{MaxBody: -1, Timeout: -1}); !errors.Is(err, taskshttp.ErrInvalidOption) ||
		!strings.Contains(err.Error(), "MaxBody") || !strings.Contains(err.Error(), "Timeout") {
		t.Fatalf("bad options: %v", err)
	}
}
