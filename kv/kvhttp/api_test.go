package kvhttp_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/kv/kvhttp"
	"github.com/detbus/detbus/transport"
)

// step is one request and what must come back: the status and fragments
// of the body.
type step struct {
	method, path, body string
	status             int
	has                []string
}

func run(t *testing.T, e *env, steps []step) {
	t.Helper()
	for i, s := range steps {
		r := e.do(s.method, s.path, s.body)
		if r.Status != s.status {
			t.Fatalf("step %d: %s %s %s: status %d, want %d: %s", i, s.method, s.path, s.body, r.Status, s.status, r.Raw)
		}
		if s.status >= 400 && r.Str("error") == "" {
			t.Fatalf("step %d: %s %s: status %d without a JSON error: %q", i, s.method, s.path, r.Status, r.Raw)
		}
		for _, f := range s.has {
			if !strings.Contains(string(r.Raw), f) {
				t.Fatalf("step %d: %s %s %s: answer lacks %s:\n%s", i, s.method, s.path, s.body, f, r.Raw)
			}
		}
	}
}

func TestTables(t *testing.T) {
	e := newEnv(t, envConfig{})
	run(t, e, []step{
		{"GET", "/api/kv/tables", "", 200, []string{`"name":"_config","crdt":"lww"`}},
		{"POST", "/api/kv/tables", `{"name":"users","crdt":"lww"}`, 201, []string{`"created":true`, `"name":"users","crdt":"lww"`, `"position":{"esk":"kv._config","index":0`}},
		{"GET", "/api/kv/tables", "", 200, []string{`"name":"_config"`, `"name":"users","crdt":"lww","keys":0`}},
		{"GET", "/api/kv/tables/users", "", 200, []string{`"name":"users","crdt":"lww"`, `"declared":{"esk":"kv._config","index":0`}},
		// An equal declaration writes nothing; another type conflicts.
		{"POST", "/api/kv/tables", `{"name":"users","crdt":"lww"}`, 200, []string{`"created":false`}},
		{"POST", "/api/kv/tables", `{"name":"users","crdt":"counter"}`, 409, []string{`users`, `lww`}},
		{"POST", "/api/kv/tables", `{"name":"hits","crdt":"counter"}`, 201, []string{`"index":1`}},
		{"GET", "/api/kv/tables/nope", "", 404, []string{`nope`}},
		// Bad requests say what was wrong.
		{"POST", "/api/kv/tables", `{"name":"x","crdt":`, 400, []string{"malformed JSON"}},
		{"POST", "/api/kv/tables", `{"name":"x" "crdt":"lww"}`, 400, []string{"at byte offset 12"}},
		{"POST", "/api/kv/tables", `{"name":"x","crdt":"lww","replicas":3}`, 400, []string{`unknown field \"replicas\"`}},
		{"POST", "/api/kv/tables", `{"name":7,"crdt":"lww"}`, 400, []string{`field \"name\"`}},
		{"POST", "/api/kv/tables", `{"name":"x","crdt":"lww"} {}`, 400, []string{"data after the JSON value"}},
		{"POST", "/api/kv/tables", ``, 400, []string{"empty request body"}},
		{"POST", "/api/kv/tables", `{"crdt":"lww"}`, 400, []string{`missing \"name\"`}},
		{"POST", "/api/kv/tables", `{"name":"x"}`, 400, []string{`missing \"crdt\"`, "orset"}},
		{"POST", "/api/kv/tables", `{"name":"x","crdt":"btree"}`, 400, []string{`unknown \"crdt\" \"btree\"`}},
		{"POST", "/api/kv/tables", `{"name":"a.b","crdt":"lww"}`, 400, []string{"a.b"}},
		{"POST", "/api/kv/tables", `{"name":"_config","crdt":"lww"}`, 400, []string{"_config"}},
		{"GET", "/api/kv/tables", "", 200, []string{`"name":"hits","crdt":"counter"`}},
	})
}

// TestOps applies every op of every table type through the API: each
// answer already reflects the op, and GET shows the value with its CRDT
// internals.
func TestOps(t *testing.T) {
	e := newEnv(t, envConfig{opts: kvhttp.Options{MaxBody: 4096}})
	for _, tt := range []struct {
		name string
		typ  kv.Type
	}{{"users", kv.TypeLWW}, {"tags", kv.TypeORSet}, {"hits", kv.TypeCounter}, {"profiles", kv.TypeMap}, {"notes", kv.TypeMVReg}} {
		e.createTable(tt.name, tt.typ)
	}
	ops := func(table string) string { return "/api/kv/tables/" + table + "/ops" }
	key := func(table, k string) string { return "/api/kv/tables/" + table + "/keys/" + k }
	run(t, e, []step{
		// lww
		{"POST", ops("users"), `{"op":"set","key":"alice","value":{"age":3}}`, 200,
			[]string{`"position":{"esk":"kv.users","index":0`, `"value":{"table":"users","key":"alice","crdt":"lww","exists":true,"value":{"age":3}`}},
		{"GET", key("users", "alice"), "", 200, []string{`"value":{"age":3}`, `"meta":{"ts":"`, `"dot":{"esk":"kv.users","index":0}`}},
		{"POST", ops("users"), `{"op":"set","key":"alice","value":{"age":4}}`, 200, []string{`"value":{"age":4}`}},
		{"POST", ops("users"), `{"op":"delete","key":"alice"}`, 200, []string{`"exists":false`}},
		{"GET", key("users", "alice"), "", 200, []string{`"exists":false`, `"deleted":true`}},
		{"GET", "/api/kv/tables/users", "", 200, []string{`"ops":3`}},
		// orset: remove drops the tags seen at its position
		{"POST", ops("tags"), `{"op":"add","key":"k","element":"x"}`, 200, []string{`"value":["x"]`}},
		{"POST", ops("tags"), `{"op":"add","key":"k","element":"y"}`, 200, []string{`"value":["x","y"]`}},
		{"POST", ops("tags"), `{"op":"remove","key":"k","element":"x"}`, 200, []string{`"value":["y"]`}},
		{"GET", key("tags", "k"), "", 200, []string{`"element":"y","tags":[{"esk":"kv.tags","index":1}]`, `"removed":[{"esk":"kv.tags","index":0}]`}},
		// counter: delta defaults to 1
		{"POST", ops("hits"), `{"op":"incr","key":"home","delta":5}`, 200, []string{`"value":5`}},
		{"POST", ops("hits"), `{"op":"incr","key":"home","delta":-2}`, 200, []string{`"value":3`}},
		{"POST", ops("hits"), `{"op":"incr","key":"home"}`, 200, []string{`"value":4`}},
		{"GET", key("hits", "home"), "", 200, []string{`"writers":[`, `"delta":-2`}},
		// map
		{"POST", ops("profiles"), `{"op":"set","key":"bob","field":"name","value":"Bob"}`, 200, []string{`"value":{"name":"Bob"}`}},
		{"POST", ops("profiles"), `{"op":"incr","key":"bob","field":"visits","delta":2}`, 200, []string{`"value":{"name":"Bob","visits":2}`}},
		{"POST", ops("profiles"), `{"op":"remove","key":"bob","field":"name"}`, 200, []string{`"value":{"visits":2}`}},
		{"GET", key("profiles", "bob"), "", 200, []string{`"keys":[`, `"counter":`}},
		// mvreg
		{"POST", ops("notes"), `{"op":"set","key":"n","value":"first"}`, 200, []string{`"value":["first"]`}},
		{"POST", ops("notes"), `{"op":"set","key":"n","value":"second"}`, 200, []string{`"value":["second"]`}},
		{"GET", key("notes", "n"), "", 200, []string{`"replaced":[{"esk":"kv.notes","index":0}]`}},
		// errors
		{"POST", ops("users"), `{"op":"add","key":"k","element":"x"}`, 409, []string{"lww"}},
		{"POST", ops("hits"), `{"op":"set","key":"k","value":1}`, 409, nil},
		{"POST", ops("users"), `{"op":"set","value":1}`, 400, []string{"key"}},
		{"POST", ops("users"), `{"op":"frobnicate","key":"k"}`, 400, []string{"frobnicate"}},
		{"POST", ops("users"), `{"op":"set","key":"k","value":`, 400, []string{"malformed JSON"}},
		{"POST", ops("users"), `{"op":"set","key":"k","colour":1}`, 400, []string{"colour"}},
		{"POST", ops("hits"), `{"op":"incr","key":"k","delta":"5"}`, 400, []string{"delta"}},
		{"POST", ops("nope"), `{"op":"set","key":"k","value":1}`, 404, []string{"nope"}},
		{"POST", ops("users"), `{"op":"set","key":"k","value":"` + strings.Repeat("x", 5000) + `"}`, 413, []string{"larger than 4096 bytes"}},
		{"GET", key("users", "ghost"), "", 404, []string{"ghost"}},
		{"GET", key("nope", "k"), "", 404, []string{"nope"}},
	})
}

// TestKeyPaths: keys with slashes, spaces and non-ASCII letters round-trip
// through the escaped path.
func TestKeyPaths(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.createTable("files", kv.TypeLWW)
	ctx := ctxT(t)
	for _, k := range []string{"a/b/c", "with space", "ünï", "q?x=1#y"} {
		pos, err := e.store.Set(ctx, "files", k, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.Wait(ctx, pos); err != nil {
			t.Fatal(err)
		}
		r := e.do("GET", "/api/kv/tables/files/keys/"+pathEscape(k), "").Want(t, 200)
		if r.Str("key") != k || r.Str("value") != k {
			t.Fatalf("key %q: got %s", k, r.Raw)
		}
	}
}

func pathEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func TestKeysPaging(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.createTable("users", kv.TypeLWW)
	ctx := ctxT(t)
	var want []string
	var last transport.Position
	for i := range 25 {
		k := fmt.Sprintf("user-%02d", 24-i) // written out of order
		pos, err := e.store.Set(ctx, "users", k, i)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
		last = pos
	}
	if err := e.store.Wait(ctx, last); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)

	var got []string
	after, pages := "", 0
	for {
		r := e.do("GET", "/api/kv/tables/users/keys?limit=10&after="+after, "").Want(t, 200)
		for _, k := range r.At("keys").([]any) {
			got = append(got, k.(string))
		}
		pages++
		if r.At("more") != true {
			if r.At("next") != nil {
				t.Fatalf("last page has a next: %s", r.Raw)
			}
			break
		}
		after = r.Str("next")
		if after != got[len(got)-1] {
			t.Fatalf("next %q is not the page's last key: %s", after, r.Raw)
		}
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages of keys %v, want 3 pages of %v", pages, got, want)
	}

	r := e.do("GET", "/api/kv/tables/users/keys", "").Want(t, 200)
	if n := len(r.At("keys").([]any)); n != 25 || r.At("more") != false {
		t.Fatalf("default page: %d keys: %s", n, r.Raw)
	}
	run(t, e, []step{
		{"GET", "/api/kv/tables/users/keys?after=user-22&values=true", "", 200,
			[]string{`"keys":["user-23","user-24"]`, `"values":[{"table":"users","key":"user-23","crdt":"lww","exists":true,"value":1`}},
		{"GET", "/api/kv/tables/users/keys?after=zzz", "", 200, []string{`"keys":[]`, `"more":false`}},
		{"GET", "/api/kv/tables/users/keys?limit=0", "", 400, []string{"limit"}},
		{"GET", "/api/kv/tables/users/keys?limit=1001", "", 400, []string{"1000"}},
		{"GET", "/api/kv/tables/users/keys?limit=ten", "", 400, []string{"ten"}},
		{"GET", "/api/kv/tables/users/keys?values=maybe", "", 400, []string{"maybe"}},
		{"GET", "/api/kv/tables/nope/keys", "", 404, []string{"nope"}},
	})
}

// TestRejections: events the fold rejects, written past the SDK's checks,
// are listed with their position, reason and payload, and the op after
// them is applied.
func TestRejections(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.createTable("users", kv.TypeLWW)
	ctx := ctxT(t)
	for _, p := range []string{`{"op":"set","key":"k"`, `{"op":"incr","key":"k"}`} {
		if _, err := e.log.Write(ctx, "kv.users", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.log.Write(ctx, "kv.ghosts", []byte(`{"op":"set","key":"k","value":1}`)); err != nil {
		t.Fatal(err)
	}
	e.do("POST", "/api/kv/tables/users/ops", `{"op":"set","key":"k","value":"after"}`).Want(t, 200, `"value":"after"`)
	r := e.do("GET", "/api/kv/rejections", "").Want(t, 200)
	rejs := r.At("rejections").([]any)
	if len(rejs) != 3 {
		t.Fatalf("want 3 rejections: %s", r.Raw)
	}
	for _, f := range []string{`"table":"users"`, `"data":"{\"op\":\"set\",\"key\":\"k\""`, `"data":"{\"op\":\"incr\",\"key\":\"k\"}"`,
		`"table":"ghosts"`, `"position":{"esk":"kv.users","index":0`} {
		if !strings.Contains(string(r.Raw), f) {
			t.Fatalf("rejections lack %s: %s", f, r.Raw)
		}
	}
	for _, rej := range rejs {
		if rej.(map[string]any)["reason"] == "" {
			t.Fatalf("a rejection without a reason: %s", r.Raw)
		}
	}
	r = e.do("GET", "/api/kv/rejections?table=ghosts", "").Want(t, 200, `"table":"ghosts"`)
	if len(r.At("rejections").([]any)) != 1 {
		t.Fatalf("want the one rejection of ghosts: %s", r.Raw)
	}
	e.do("GET", "/api/kv/tables/users", "").Want(t, 200, `"rejected":2`)
}

// TestPathsAndMethods: paths and methods the API does not serve get JSON
// errors too.
func TestPathsAndMethods(t *testing.T) {
	e := newEnv(t, envConfig{})
	r := e.do("DELETE", "/api/kv/tables", "").Want(t, http.StatusMethodNotAllowed, "GET", "POST")
	if allow := r.Header.Get("Allow"); !strings.Contains(allow, "POST") {
		t.Fatalf("Allow: %q", allow)
	}
	e.do("GET", "/api/kv/nothing", "").Want(t, http.StatusNotFound)
	e.do("GET", "/api/kv/tables/users/ops", "").Want(t, http.StatusMethodNotAllowed)
	if r := e.do("GET", "/no/such/page", ""); r.Status != http.StatusNotFound {
		t.Fatalf("a page that does not exist: %d", r.Status)
	}
}

// TestUnavailable: with NATS gone, a write answers 503 and reads of the
// local state still work.
func TestUnavailable(t *testing.T) {
	e := newEnv(t, envConfig{opts: kvhttp.Options{Timeout: 2 * time.Second}, logCfg: transport.Config{Timeout: time.Second}})
	e.createTable("users", kv.TypeLWW)
	e.nats.Shutdown()
	start := time.Now()
	e.do("POST", "/api/kv/tables/users/ops", `{"op":"set","key":"k","value":1}`).Want(t, http.StatusServiceUnavailable)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the write took %v to fail", d)
	}
	e.do("POST", "/api/kv/tables", `{"name":"more","crdt":"lww"}`).Want(t, http.StatusServiceUnavailable)
	e.do("GET", "/api/kv/tables/users", "").Want(t, http.StatusOK)
}

// TestSDKAndNatsCLI: an op the Go SDK writes and one the nats CLI
// publishes, without any header, both reach the HTTP API.
func TestSDKAndNatsCLI(t *testing.T) {
	cli := testnats.NatsCLI(t)
	e := newEnv(t, envConfig{})
	e.createTable("users", kv.TypeLWW)
	if _, err := e.store.Set(ctxT(t), "users", "sdk", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	testnats.NatsPub(t, ctxT(t), cli, e.nats.ClientURL(), "events.kv.users", `{"op":"set","key":"cli","value":{"n":2}}`, true)
	e.waitKey("users", "sdk", `{"n":1}`)
	e.waitKey("users", "cli", `{"n":2}`)
	e.do("GET", "/api/kv/tables/users/keys", "").Want(t, 200, `"keys":["cli","sdk"]`)
}

// TestDeletedKeys: a deleted key leaves the pages of keys but can still be
// read, with its tombstone.
func TestDeletedKeys(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.createTable("users", kv.TypeLWW)
	run(t, e, []step{
		{"POST", "/api/kv/tables/users/ops", `{"op":"set","key":"a","value":1}`, 200, nil},
		{"POST", "/api/kv/tables/users/ops", `{"op":"set","key":"b","value":2}`, 200, nil},
		{"POST", "/api/kv/tables/users/ops", `{"op":"delete","key":"a"}`, 200, []string{`"exists":false`}},
		{"GET", "/api/kv/tables/users/keys", "", 200, []string{`"keys":["b"]`}},
		{"GET", "/api/kv/tables/users", "", 200, []string{`"keys":1`}},
		{"GET", "/api/kv/tables/users/keys/a", "", 200, []string{`"exists":false`, `"value":null`, `"deleted":true`}},
	})
}
