package loghttp

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/detbus/detbus/transport"
)

// event is an event as the API shows it. Its payload is shown by format:
// "json" (JSON, the value in JSON), "msgpack" (msgpack, decoded, in
// JSON), "text" (UTF-8 that is not what its content type says, in Text),
// "bytes" (anything else, in Hex) or "empty".
type event struct {
	Index uint64 `json:"index"`
	Seq   uint64 `json:"seq"`
	// HLC is the event's HLC time ("wall.logical"), and Time its wall
	// part: from the HLC header when the event has one within
	// transport.MaxEventSkew of Stored, else Stored's.
	HLC       string              `json:"hlc"`
	Time      time.Time           `json:"time"`
	HLCHeader bool                `json:"hlc_header"`
	Clamped   bool                `json:"clamped"`
	Stored    time.Time           `json:"stored"`
	Headers   map[string][]string `json:"headers"`
	// ContentType is the Content-Type header, "" when there is none
	// (JSON, by the log's rule).
	ContentType string          `json:"content_type"`
	Size        int             `json:"size"`
	Format      string          `json:"format"`
	JSON        json.RawMessage `json:"json,omitempty"`
	Text        *string         `json:"text,omitempty"`
	Hex         string          `json:"hex,omitempty"`
	// Truncated says that only the first PreviewBytes of the payload are
	// shown, as text or bytes: the event's own path has them all.
	Truncated bool `json:"truncated,omitempty"`
	// Problem says why a payload is not shown as its content type says:
	// "not valid JSON", a msgpack decoding error.
	Problem string `json:"problem,omitempty"`
}

// toEvent shows ev, its payload cut to limit bytes (0: whole).
func toEvent(ev transport.Event, limit int) event {
	out := event{
		Index: ev.Index, Seq: ev.Seq, HLC: ev.Time.String(), Time: ev.Time.Time().UTC(), Clamped: ev.Clamped,
		Stored: ev.Stored.UTC(), Headers: map[string][]string{}, ContentType: ev.ContentType(), Size: len(ev.Data),
		HLCHeader: ev.Header.Get(transport.HeaderHLC) != "" && !ev.Clamped,
	}
	for k, v := range ev.Header {
		out.Headers[k] = v
	}
	showPayload(&out, ev.Data, limit)
	return out
}

// showPayload fills the payload fields of out from data.
func showPayload(out *event, data []byte, limit int) {
	if len(data) == 0 {
		out.Format = "empty"
		return
	}
	media, _, _ := mime.ParseMediaType(out.ContentType)
	if out.ContentType == "" {
		media = transport.ContentTypeJSON
	}
	cut := limit > 0 && len(data) > limit
	switch {
	case cut:
		// A part of a value is no value: show the start as text or bytes.
		data, out.Truncated = data[:limit], true
	case media == transport.ContentTypeJSON || strings.HasSuffix(media, "+json"):
		if json.Valid(data) {
			out.Format, out.JSON = "json", json.RawMessage(data)
			return
		}
		out.Problem = "not valid JSON"
	case media == transport.ContentTypeMsgpack:
		j, err := transport.MsgpackJSON(data)
		if err == nil {
			out.Format, out.JSON = "msgpack", j
			return
		}
		out.Problem = fmt.Sprintf("msgpack that does not decode: %v", err)
	}
	if cut {
		// Do not cut a character in two.
		for i := 0; i < utf8.UTFMax && len(data) > 0 && !utf8.Valid(data); i++ {
			data = data[:len(data)-1]
		}
	}
	if utf8.Valid(data) && !bytes.ContainsFunc(data, isControl) {
		s := string(data)
		out.Format, out.Text = "text", &s
		return
	}
	out.Format, out.Hex = "bytes", hex.EncodeToString(data)
}

// isControl reports the control characters that make a payload bytes,
// not text: all but tab, newline and carriage return.
func isControl(r rune) bool {
	return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f
}
