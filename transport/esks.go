package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bounds of an [ESKQuery].
const (
	DefaultESKPage = 100
	MaxESKPage     = 1000
)

// ESKInfo describes one ESK of the log.
type ESKInfo struct {
	ESK      string
	Count    uint64    // events, as the stream leader counts them
	LastSeq  uint64    // the stream sequence of its last event (0 if not read)
	LastTime time.Time // when the stream stored its last event
}

// ESKQuery asks for one page of a log's ESKs, in byte order of their names.
type ESKQuery struct {
	// Prefix keeps the ESKs whose name starts with it: any part of an
	// ESK ("orders.e" matches "orders.eu" and "orders.es.madrid"), not a
	// pattern. "" keeps every ESK.
	Prefix string
	// After starts the page after this name ("" from the first), as the
	// previous page's last ESK.
	After string
	// Limit is the most ESKs on the page (default DefaultESKPage, at most
	// MaxESKPage).
	Limit int
}

// ESKPage is one page of a listing.
type ESKPage struct {
	ESKs  []ESKInfo // at most Limit, in byte order of names
	Total int       // the ESKs matching Prefix, this page's and the others
	More  bool      // more ESKs match after the page's last
	// The log's head when the page was read: its events, its last
	// stream sequence and how many ESKs it holds.
	Events  uint64
	LastSeq uint64
	AllESKs uint64
}

// Directory lists the ESKs of a log page by page, with each listed ESK's
// count and last event, at a cost that grows with the page, not with the
// number of ESKs, once the directory knows their names.
//
// It keeps the sorted names of every ESK of the log (about 30 bytes
// each: 6 MB for 200,000 ESKs), read from the stream leader's count per
// subject (stream info with a subject filter, pages of 100,000 subjects
// asked at once). Each [Directory.List] asks the stream leader how many
// subjects the log holds (one stream info); when that number moved, an
// ESK appeared, and the names are read again before the page is cut
// (about 0.2 s at 200,000 ESKs; callers at that moment share one read).
// The log denies delete and purge, so a name never goes away. For the
// page itself, each ESK's count comes from the stream leader (a stream
// info filtered on its subject) and its last event from batched direct
// gets of the last message of each (multi_last): round trips that do not
// grow with the log. Counts and last events are read one after the
// other, not at one instant: under writes they can disagree by the
// events written in between.
//
// A Directory is safe for concurrent use.
type Directory struct {
	l *Log

	mu       sync.Mutex // held while the names are read
	names    []string   // every ESK, sorted; replaced, never changed
	subjects uint64     // the stream's subject count the names were read at
	read     bool
}

// NewDirectory returns a directory of l's ESKs. It reads nothing until
// the first List.
func NewDirectory(l *Log) *Directory { return &Directory{l: l} }

// List returns the page of ESKs that q asks for.
//
// Errors: [ErrInvalidOption] for a limit out of range, or a prefix or
// cursor that no ESK could start with (whitespace, control or non-ASCII
// bytes, a wildcard, longer than [MaxESKLength]); [ErrUnavailable] when
// NATS does not answer.
func (d *Directory) List(ctx context.Context, q ESKQuery) (ESKPage, error) {
	if q.Limit == 0 {
		q.Limit = DefaultESKPage
	}
	if q.Limit < 1 || q.Limit > MaxESKPage {
		return ESKPage{}, fmt.Errorf("%w: limit %d: want 1 to %d", ErrInvalidOption, q.Limit, MaxESKPage)
	}
	if err := validatePart("prefix", q.Prefix); err != nil {
		return ESKPage{}, err
	}
	if err := validatePart("after", q.After); err != nil {
		return ESKPage{}, err
	}
	ctx, cancel := d.l.withTimeout(ctx)
	defer cancel()
	info, err := d.l.info(ctx, "")
	if err != nil {
		return ESKPage{}, err
	}
	names, err := d.current(ctx, info.State.NumSubjects)
	if err != nil {
		return ESKPage{}, err
	}
	// The names matching the prefix are one run of the sorted list.
	lo := sort.SearchStrings(names, q.Prefix)
	hi := lo + sort.Search(len(names)-lo, func(i int) bool { return !strings.HasPrefix(names[lo+i], q.Prefix) })
	from := lo
	if q.After != "" {
		from = max(lo, min(hi, sort.Search(len(names), func(i int) bool { return names[i] > q.After })))
	}
	to := min(hi, from+q.Limit)
	page := ESKPage{Total: hi - lo, More: to < hi, Events: info.State.Msgs, LastSeq: info.State.LastSeq, AllESKs: info.State.NumSubjects}
	page.ESKs, err = d.l.describe(ctx, names[from:to])
	return page, err
}

// validatePart checks that s could be the start of an ESK: printable
// ASCII without wildcards, at most MaxESKLength bytes.
func validatePart(what, s string) error {
	if len(s) > MaxESKLength {
		return fmt.Errorf("%w: %s is %d bytes long, and no ESK is longer than %d", ErrInvalidOption, what, len(s), MaxESKLength)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ' || c >= 0x7f:
			return fmt.Errorf("%w: %s %q has byte 0x%02x at %d, which no ESK holds (printable ASCII only)", ErrInvalidOption, what, s, c, i)
		case c == '*' || c == '>':
			return fmt.Errorf("%w: %s %q has wildcard %q, which no ESK holds: a prefix is the start of a name, not a pattern", ErrInvalidOption, what, s, c)
		}
	}
	return nil
}

// current returns the sorted names of every ESK, read again when the
// stream's subject count is not the one they were read at.
func (d *Directory) current(ctx context.Context, subjects uint64) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.read && d.subjects == subjects {
		return d.names, nil
	}
	names, at, err := d.l.allESKs(ctx, subjects)
	if err != nil {
		return nil, err
	}
	d.names, d.subjects, d.read = names, at, true
	return names, nil
}

// allESKs reads the name of every ESK from the stream leader, in pages
// asked for at once, and returns them sorted with the subject count they
// are complete for: subjects, or less when ESKs appeared while the pages
// were read (the next List then reads them again).
func (l *Log) allESKs(ctx context.Context, subjects uint64) ([]string, uint64, error) {
	filter := l.cfg.Prefix + ".>"
	for attempt := 0; ; attempt++ {
		pages := max(1, int((subjects+subjectsPerInfo-1)/subjectsPerInfo))
		type result struct {
			names []string
			total int
			err   error
		}
		results := make([]result, pages)
		var wg sync.WaitGroup
		for p := range pages {
			wg.Go(func() {
				r := &results[p]
				r.names, r.total, r.err = l.subjectNames(ctx, filter, p*subjectsPerInfo)
			})
		}
		wg.Wait()
		var names []string
		total := results[0].total
		consistent := true
		for _, r := range results {
			if r.err != nil {
				return nil, 0, r.err
			}
			consistent = consistent && r.total == total
			names = append(names, r.names...)
		}
		// The server writes a reply's keys sorted, and pages in order.
		if !slices.IsSorted(names) {
			slices.Sort(names)
		}
		names = slices.Compact(names)
		if uint64(total) > subjects {
			// ESKs appeared since the count: ask for every page of the
			// new count.
			subjects, consistent = uint64(total), false
		}
		if consistent && len(names) == total || attempt == 2 {
			// After three tries under a flood of new ESKs, take what
			// came: the count it is complete for makes the next List
			// read again.
			return names, min(subjects, uint64(len(names))), nil
		}
	}
}

// subjectsPerInfo is how many subjects the server lists in one stream
// info reply (JSMaxSubjectDetails).
const subjectsPerInfo = 100_000

// subjectNames asks a confirmed stream leader for the subjects matching
// filter, from offset in the server's sorted order, and returns them as
// ESKs with the number of subjects that match in all.
func (l *Log) subjectNames(ctx context.Context, filter string, offset int) ([]string, int, error) {
	subjects, total, err := l.subjectsInfo(ctx, filter, offset)
	if err != nil {
		return nil, 0, err
	}
	names, err := l.eskKeys(subjects)
	return names, total, err
}

// subjectCounts is [Log.subjectNames] with each subject's count, as a map.
func (l *Log) subjectCounts(ctx context.Context, filter string, offset int) (map[string]uint64, int, error) {
	subjects, total, err := l.subjectsInfo(ctx, filter, offset)
	if err != nil || len(subjects) == 0 {
		return nil, total, err
	}
	var counts map[string]uint64
	if err := json.Unmarshal(subjects, &counts); err != nil {
		return nil, 0, fmt.Errorf("%w: stream info %q: subjects: %v", ErrUnavailable, l.cfg.Stream, err)
	}
	return counts, total, nil
}

// subjectsInfo is one stream info request with a subject filter, answered
// by a confirmed stream leader (see [confirmed]): the JSON object of the
// count of each subject matching filter (from offset in sorted order,
// when more match than one reply lists; null when none matches) and how
// many match in all.
func (l *Log) subjectsInfo(ctx context.Context, filter string, offset int) (json.RawMessage, int, error) {
	req, _ := json.Marshal(struct {
		Filter string `json:"subjects_filter"`
		Offset int    `json:"offset,omitempty"`
	}{filter, offset})
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, 250*time.Millisecond) {
		msg, err := l.nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+l.cfg.Stream, req)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: stream info %q: %v", ErrUnavailable, l.cfg.Stream, err)
		}
		var resp struct {
			Total int `json:"total"`
			State struct {
				Subjects json.RawMessage `json:"subjects"`
			} `json:"state"`
			Cluster *jetstream.ClusterInfo `json:"cluster"`
			Error   *struct {
				Code        int    `json:"code"`
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return nil, 0, fmt.Errorf("%w: stream info %q: %v", ErrUnavailable, l.cfg.Stream, err)
		}
		why := ""
		switch {
		case resp.Error != nil && resp.Error.Code == 403:
			return nil, 0, fmt.Errorf("%w: stream info %q: %s", ErrForbidden, l.cfg.Stream, resp.Error.Description)
		case resp.Error != nil:
			why = fmt.Sprintf("%s (%d)", resp.Error.Description, resp.Error.ErrCode)
		default:
			why = confirmed(resp.Cluster)
		}
		if why == "" {
			if string(resp.State.Subjects) == "null" {
				resp.State.Subjects = nil
			}
			return resp.State.Subjects, resp.Total, nil
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return nil, 0, fmt.Errorf("%w: stream info %q: %s", ErrUnavailable, l.cfg.Stream, why)
		}
	}
}

// eskKeys returns the keys of obj, a JSON object of subjects to counts
// (valid JSON: it was decoded once), that are ESKs of l. A key is read
// without decoding the object into a map, which is five times faster
// for the 100,000 subjects of a full reply; a key with an escape is
// unquoted by encoding/json.
func (l *Log) eskKeys(obj []byte) ([]string, error) {
	var names []string
	i := 0
	skip := func() {
		for i < len(obj) && (obj[i] == ' ' || obj[i] == '\t' || obj[i] == '\n' || obj[i] == '\r') {
			i++
		}
	}
	bad := func(what string) error {
		return fmt.Errorf("%w: stream info %q: subjects: %s at byte %d", ErrUnavailable, l.cfg.Stream, what, i)
	}
	skip()
	if i == len(obj) {
		return nil, nil // no subjects
	}
	if obj[i] != '{' {
		return nil, bad("not an object")
	}
	i++
	for {
		skip()
		if i < len(obj) && obj[i] == '}' {
			return names, nil
		}
		if i >= len(obj) || obj[i] != '"' {
			return nil, bad("no key")
		}
		start, escaped := i, false
		for i++; i < len(obj) && obj[i] != '"'; i++ {
			if obj[i] == '\\' {
				escaped = true
				i++
			}
		}
		if i >= len(obj) {
			return nil, bad("an unterminated key")
		}
		i++
		key := string(obj[start+1 : i-1])
		if escaped {
			if err := json.Unmarshal(obj[start:i], &key); err != nil {
				return nil, bad("a bad key")
			}
		}
		if esk, ok := l.ESKOf(key); ok {
			names = append(names, esk)
		}
		// The count, then a comma or the end.
		for i < len(obj) && obj[i] != ',' && obj[i] != '}' {
			i++
		}
		if i >= len(obj) {
			return nil, bad("an unterminated object")
		}
		if obj[i] == ',' {
			i++
		}
	}
}

// describe returns the count and the last event's position and time of
// each ESK of esks: the counts from the stream leader, asked a few at a
// time, and the last events from batched direct gets of the last message
// of each subject (multi_last), bounded in bytes per reply.
func (l *Log) describe(ctx context.Context, esks []string) ([]ESKInfo, error) {
	out := make([]ESKInfo, len(esks))
	at := make(map[string]int, len(esks)) // subject -> position in out
	subjects := make([]string, len(esks))
	for i, esk := range esks {
		out[i].ESK = esk
		subjects[i] = l.Subject(esk)
		at[subjects[i]] = i
	}
	var wg sync.WaitGroup
	errs := make([]error, len(esks))
	sem := make(chan struct{}, describeConcurrency)
	for i := range esks {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			counts, _, err := l.subjectCounts(ctx, subjects[i], 0)
			out[i].Count, errs[i] = counts[subjects[i]], err
		})
	}
	var lastErr error
	wg.Go(func() {
		lastErr = l.lastOf(ctx, subjects, func(m storedMsg) { out[at[m.Subject]].LastSeq, out[at[m.Subject]].LastTime = m.Seq, m.Time })
	})
	wg.Wait()
	for _, err := range append(errs, lastErr) {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// describeConcurrency bounds the stream info requests of one page in
// flight at once.
const describeConcurrency = 8

// lastOf hands the last message of each of subjects to found: one
// multi_last direct get for them all, again for those a reply left out
// (it stops after describeMaxBytes), and the leader's message get for
// any that a lagging replica did not hold.
func (l *Log) lastOf(ctx context.Context, subjects []string, found func(storedMsg)) error {
	missing := slices.Clone(subjects)
	for round := 0; len(missing) > 0 && round < len(subjects); round++ {
		rep, err := l.gets.do(ctx, directGetRequest{MultiLast: missing, Batch: len(missing), MaxBytes: describeMaxBytes})
		if err != nil {
			return err
		}
		if len(rep.msgs) == 0 {
			break
		}
		got := make(map[string]bool, len(rep.msgs))
		for _, m := range rep.msgs {
			got[m.Subject] = true
			found(m)
		}
		missing = slices.DeleteFunc(missing, func(s string) bool { return got[s] })
	}
	for _, s := range missing {
		m, ok, err := l.leaderLast(ctx, s)
		if err != nil {
			return err
		}
		if ok {
			found(m)
		}
	}
	return nil
}

// describeMaxBytes bounds the bytes of one multi_last reply: the last
// events come with their payloads.
const describeMaxBytes = 4 << 20
