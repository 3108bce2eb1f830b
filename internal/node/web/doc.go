// Package web is the HTTP shell of a detbus node: the access rule that
// guards everything the node serves over HTTP ([Protect]: token, users,
// sessions, the loopback rule), and the browser UI's shell, into which
// each part of the node plugs its page and its JSON API ([New]).
//
// # Plugging in a page
//
// A part of the node (kv/kvhttp, tasks/taskshttp, ...) offers a [Page]
// and an [API]:
//
//	//go:embed ui
//	var files embed.FS // ui/things.html, ui/things.js
//
//	func Page() web.Page {
//		return web.Page{Path: "/things", Title: "things", Files: web.Dir(files, "ui"),
//			Body: "things.html", Scripts: []string{"things.js"}}
//	}
//
// and the server lists them once, in the order of the nav:
//
//	h, err := web.New([]web.Page{kvhttp.Page(), things.Page()},
//		[]web.API{{Prefix: "/api/things/", Handler: thingsAPI}})
//	h, err = web.Protect(h, web.Access{Token: token, Users: users})
//
// The shell serves each page at its Path as one HTML document: the title
// "detbus <Title>", the shell's style.css and common.js, then the page's
// styles and scripts, a header, and the page's Body. The header holds
// the nav (a link to every page, in order, with id "nav-<Title>", the
// current one marked aria-current="page"), the live status (#status with
// data-state "connecting", "live" or "down", and #status-text: common.js's
// setStatus sets them), #applied (free for the page to fill), and the
// log-out form (#logout, hidden until common.js's request sees that the
// node needs credentials). Every other file of the page's Files is served
// at /ui/<name>, beside the shell's own; two pages may not name the same
// file. Pages and files are sent with a content security policy that
// lets a page load only this server's scripts and styles (no inline
// script or style) and talk only to this server.
//
// common.js gives every page: $ (by id), el (build an element; values
// are always set as text, never as HTML), request (call a JSON API: it
// throws the server's error message, and reloads the page on 401 so that
// the login form shows), renderJSON (JSON pretty-printed, HLC timestamps
// readable on hover), feeds, messages and setStatus.
//
// An API's Handler answers every request under its Prefix
// ("/api/<name>/"), whatever its method; the shell answers a path nothing
// serves with a JSON 404 under /api/ and a plain one elsewhere. A handler
// that writes to the log asks httpapi.MayWrite with the ESK first.
//
// # Access
//
// [Protect] wraps the handler of [New] (or a larger one) with the node's
// rule:
//
//   - with a token or users, every request needs "Authorization: Bearer
//     <token>", "Authorization: Basic" with a user's name and password,
//     or the session cookie that POST /login (the login form) or a page
//     opened with ?token=<token> gives a browser (it is redirected to the
//     same URL without the token). A session is a random id that the node
//     keeps (at most 10,000, the oldest dropped first) and the browser
//     holds in the cookie detbus_session (HttpOnly, SameSite=Strict, 30
//     days at most). POST /logout ends the session on the node, so a
//     copied cookie stops working, and so do the requests still open on
//     it (event streams; also when the session expires or is dropped);
//     a restart of the node ends every session. The
//     API takes no token in the URL. A request without valid credentials
//     gets 401: the login form for a browser asking for a page, a JSON
//     error otherwise.
//   - without either, only requests whose Host header is a loopback name
//     (localhost, 127.0.0.0/8, ::1) are served (403 otherwise), so that a
//     web page cannot reach a node on loopback by rebinding a DNS name to
//     127.0.0.1.
//
// The token opens everything as an admin. A user reads everything the
// node serves (every role may read the whole log on NATS too) and writes
// what its role lets it write on NATS: an admin every ESK, a source the
// ESKs matching its sources (never under the reserved "detbus."), a
// reader nothing; the rights travel with the request for the handlers
// (httpapi.MayWrite). Cross-origin browser writes are refused (403)
// either way. `detbus serve` refuses to listen beyond loopback without a
// token or users.
//
// # Concurrency
//
// The handlers of [New] and [Protect] are safe for concurrent use; what
// New is given is read once, when it is called.
package web
