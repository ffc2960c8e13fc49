package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Conflict policies of `hop import --on-conflict`: what to do with a row whose custom
// slug is taken by another link.
const (
	OnConflictSkip   = "skip"   // leave the existing link, report the row skipped
	OnConflictRename = "rename" // create it under slug-2, slug-3, ...
	OnConflictFail   = "fail"   // report the row failed and send no further batches
)

// What happened to a row.
const (
	Created = "created"
	Skipped = "skipped"
	Renamed = "renamed"
	Failed  = "failed"
	NotSent = "not sent" // after a conflict under OnConflictFail; running it again sends it
)

// ImportOptions tune Import.
type ImportOptions struct {
	DryRun     bool
	OnConflict string // OnConflictSkip (default), OnConflictRename or OnConflictFail
	BatchSize  int    // links per bulk request, 1-1000; default 1000
	Workers    int    // bulk requests in flight; default 4
	// Progress is called as rows are done. It and the client's Retry.Notify are called
	// from several goroutines, but never at once, so both may write to the same place
	// without a lock of their own. Batches are retried as the client's Retry says.
	Progress func(rows int)
}

// Outcome is what happened (or, in a dry run, would happen) to one row.
type Outcome struct {
	Line   int
	Action string // Created, Skipped, Renamed, Failed or NotSent
	Slug   string // the slug it has (or would have); "" when generated in a dry run
	URL    string
	Reason string
	// Note is the row's Note, kept only when its link was (or would be) created or
	// renamed: what the link came in without.
	Note string
}

// Summary is the result of an import: one outcome per row, in file order.
type Summary struct {
	Created, Skipped, Renamed, Failed, NotSent int
	Outcomes                                   []Outcome
}

func (s *Summary) count() {
	s.Created, s.Skipped, s.Renamed, s.Failed, s.NotSent = 0, 0, 0, 0, 0
	for _, o := range s.Outcomes {
		switch o.Action {
		case Created:
			s.Created++
		case Skipped:
			s.Skipped++
		case Renamed:
			s.Renamed++
		case Failed:
			s.Failed++
		case NotSent:
			s.NotSent++
		}
	}
}

// maxRenames bounds the slug-2 ... slug-N candidates tried for one row.
const maxRenames = 20

// Import creates rows through POST /links/bulk in batches, each under an
// Idempotency-Key derived from its content: a re-run, or a run resumed after an
// interruption, is answered from the server's record and creates nothing again. Rows
// the server refuses are reported with its reason and never stop the others. err is
// only for a failure that stops the import (the server unreachable after retries).
func (c *Client) Import(ctx context.Context, rows []Row, o ImportOptions) (Summary, error) {
	if o.OnConflict == "" {
		o.OnConflict = OnConflictSkip
	}
	switch o.OnConflict {
	case OnConflictSkip, OnConflictRename, OnConflictFail:
	default:
		return Summary{}, fmt.Errorf("--on-conflict must be skip, rename or fail, not %q", o.OnConflict)
	}
	if o.BatchSize <= 0 || o.BatchSize > 1000 {
		o.BatchSize = 1000
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.OnConflict == OnConflictFail && !o.DryRun {
		o.Workers = 1 // so that nothing after the first conflict is sent
	}
	im := &importer{o: o, out: make([]Outcome, len(rows))}
	// A copy of the client whose retries report under the lock Progress is called
	// under: the lookups of renamed rows retry too.
	ic := *c
	if notify := c.Retry.Notify; notify != nil {
		ic.Retry.Notify = func(err error, wait time.Duration) {
			im.mu.Lock()
			defer im.mu.Unlock()
			notify(err, wait)
		}
	}
	im.c = &ic
	for i, r := range rows {
		im.out[i] = Outcome{Line: r.Line, URL: r.Req.URL, Slug: r.Req.Slug, Note: r.Note}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Workers)
	for start := 0; start < len(rows); start += o.BatchSize {
		end := min(start+o.BatchSize, len(rows))
		g.Go(func() error {
			if im.stopped.Load() {
				for i := start; i < end; i++ {
					im.out[i].Action, im.out[i].Reason = NotSent, "an earlier row's slug was taken (--on-conflict fail)"
				}
				im.progress(end - start)
				return nil
			}
			return im.batch(gctx, rows[start:end], im.out[start:end])
		})
	}
	err := g.Wait()
	if err != nil {
		// Rows of batches that did not finish: running the import again sends them,
		// and answers the rest from the server's records.
		for i := range im.out {
			if im.out[i].Action == "" {
				im.out[i].Action, im.out[i].Reason = Failed, "not sent or not answered: the import stopped; run it again to resume"
			}
		}
	}
	for i := range im.out {
		if a := im.out[i].Action; a != Created && a != Renamed {
			im.out[i].Note = "" // no link was made, so it lacks nothing
		}
	}
	s := Summary{Outcomes: im.out}
	s.count()
	return s, err
}

type importer struct {
	c       *Client
	o       ImportOptions
	out     []Outcome
	stopped atomic.Bool // a conflict under OnConflictFail: send nothing more
	mu      sync.Mutex  // serialises the Progress and Retry.Notify calls
}

func (im *importer) progress(n int) {
	if im.o.Progress == nil {
		return
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	im.o.Progress(n)
}

// batch sends one batch and settles each of its rows; rows to rename go on to
// further requests.
func (im *importer) batch(ctx context.Context, rows []Row, out []Outcome) error {
	defer im.progress(len(rows))
	reqs := make([]LinkRequest, len(rows))
	for i, r := range rows {
		reqs[i] = r.Req
	}
	ans, err := im.send(ctx, reqs)
	if err != nil {
		return err
	}
	var rename []int // indexes into rows
	for i, res := range ans.Results {
		o := &out[i]
		switch {
		case res.Status == http.StatusCreated:
			im.created(o, res, ans.Replayed, "")
		case res.Status == http.StatusConflict && rows[i].Req.Slug != "":
			switch im.o.OnConflict {
			case OnConflictSkip:
				o.Action, o.Reason = Skipped, "slug "+rows[i].Req.Slug+" is taken"
			case OnConflictFail:
				o.Action, o.Reason = Failed, "slug "+rows[i].Req.Slug+" is taken"
				if !im.o.DryRun {
					im.stopped.Store(true)
				}
			case OnConflictRename:
				rename = append(rename, i)
			}
		case res.Status == http.StatusBadRequest && rows[i].Req.Slug != "" && strings.HasPrefix(res.Error, "slug") && im.o.OnConflict == OnConflictRename:
			// A slug hop cannot take (too short, reserved): a generated one instead.
			o.Reason = res.Error
			rename = append(rename, i)
		default:
			o.Action, o.Reason = Failed, res.Error
		}
	}
	if len(rename) == 0 {
		return nil
	}
	return im.rename(ctx, rows, out, rename)
}

func (im *importer) created(o *Outcome, res BulkResult, replayed bool, renamedFrom string) {
	if res.Link != nil {
		o.Slug = res.Link.Slug
	}
	switch {
	case replayed:
		o.Action, o.Reason = Skipped, "already imported (the server replayed its earlier answer)"
	case renamedFrom != "":
		o.Action = Renamed
		if o.Reason == "" {
			o.Reason = "slug " + renamedFrom + " is taken"
		}
		if o.Slug != "" {
			o.Reason += "; now " + o.Slug
		} else {
			o.Reason += "; would get a generated slug"
		}
	default:
		o.Action = Created
	}
}

// rename settles rows whose slug was taken (or unusable): a row whose slug already
// holds a link to the same URL was imported before and is skipped; the others are
// tried as slug-2, slug-3, ... and an unusable slug is replaced by a generated one.
func (im *importer) rename(ctx context.Context, rows []Row, out []Outcome, idx []int) error {
	pending := idx[:0:0]
	for _, i := range idx {
		if out[i].Reason != "" { // an unusable slug: generated
			pending = append(pending, i)
			continue
		}
		same, err := im.sameLink(ctx, rows[i].Req.Slug, rows[i].Req)
		if err != nil {
			return err
		}
		if same {
			out[i].Action, out[i].Reason = Skipped, "already imported: slug "+rows[i].Req.Slug+" has this URL"
			continue
		}
		pending = append(pending, i)
	}
	for n := 2; len(pending) > 0; n++ {
		if n > maxRenames+1 {
			for _, i := range pending {
				out[i].Action, out[i].Reason = Failed, fmt.Sprintf("slug %s and %s-2 to %s-%d are all taken", rows[i].Req.Slug, rows[i].Req.Slug, rows[i].Req.Slug, maxRenames+1)
			}
			return nil
		}
		reqs := make([]LinkRequest, len(pending))
		for k, i := range pending {
			reqs[k] = rows[i].Req
			if out[i].Reason != "" {
				reqs[k].Slug = ""
			} else {
				reqs[k].Slug = candidate(rows[i].Req.Slug, n)
			}
		}
		ans, err := im.send(ctx, reqs)
		if err != nil {
			return err
		}
		var next []int
		for k, res := range ans.Results {
			i := pending[k]
			switch {
			case res.Status == http.StatusCreated:
				if reqs[k].Slug != "" {
					out[i].Slug = reqs[k].Slug
				} else {
					out[i].Slug = ""
					out[i].Reason = "slug " + rows[i].Req.Slug + " is not usable in hop (" + out[i].Reason + ")"
				}
				im.created(&out[i], res, false, rows[i].Req.Slug)
				if ans.Replayed && out[i].Action == Renamed {
					out[i].Action, out[i].Reason = Skipped, "already imported as "+out[i].Slug
				}
			case res.Status == http.StatusConflict && reqs[k].Slug != "":
				same, err := im.sameLink(ctx, reqs[k].Slug, rows[i].Req)
				if err != nil {
					return err
				}
				if same {
					out[i].Slug = reqs[k].Slug
					out[i].Action, out[i].Reason = Skipped, "already imported as "+reqs[k].Slug
					continue
				}
				next = append(next, i)
			default:
				out[i].Action, out[i].Reason = Failed, res.Error
			}
		}
		pending = next
	}
	return nil
}

// candidate is the n-th slug tried for a taken one, kept within hop's 64 characters.
func candidate(slug string, n int) string {
	suffix := "-" + strconv.Itoa(n)
	if len(slug)+len(suffix) > 64 {
		slug = slug[:64-len(suffix)]
	}
	return slug + suffix
}

// sameLink reports whether slug holds a live link to r's URL: the row was imported
// before (a re-run after the server forgot its idempotency records).
func (im *importer) sameLink(ctx context.Context, slug string, r LinkRequest) (bool, error) {
	l, err := im.c.GetLink(ctx, slug, r.Domain)
	var ae *Error
	if errors.As(err, &ae) && ae.Status < 500 {
		return false, nil // not found, deleted, or a slug the API cannot look up
	}
	if err != nil {
		return false, err
	}
	return l.OriginalURL == r.URL, nil
}

// send posts one bulk request under a key derived from its content, retrying what may
// be retried (Client.Retry): a 429, network failures, 5xx, and 409 while an earlier
// attempt is still being answered. Retrying is safe because the key makes the server
// answer a repeat from its record.
func (im *importer) send(ctx context.Context, reqs []LinkRequest) (BulkAnswer, error) {
	key := ""
	if !im.o.DryRun {
		// A dry run creates nothing, so there is nothing to replay; a key would only
		// answer a later dry run from a state that has moved on since.
		key = batchKey(reqs)
	}
	var ans BulkAnswer
	err := im.c.Retry.retry(ctx, func(err error) bool {
		var ae *Error
		return im.c.transient(err) || errors.As(err, &ae) && ae.Status == http.StatusConflict
	}, func() (err error) {
		ans, err = im.c.Bulk(ctx, reqs, key, im.o.DryRun)
		return err
	})
	if err != nil {
		return ans, fmt.Errorf("bulk create (%d links): %w", len(reqs), err)
	}
	return ans, nil
}

// batchKey is the Idempotency-Key of a batch: a hash of exactly what is sent, so the
// same batch always has the same key and a different one never does.
func batchKey(reqs []LinkRequest) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(reqs)
	return "hop-import-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// Export writes every live link, newest first: format "jsonl" writes each as the API
// returns it, one per line (`hop import --from hop` reads it back); "csv" writes a
// header and one row per link whose columns `hop import --from csv` also reads.
// A link on the hop's default domain is written without a domain, so that importing
// the export into another hop puts it on that hop's default domain; links on branded
// domains keep theirs. Pages are read with Client.Retry, so a rate limit is waited out.
// progress, if not nil, is called after each page with the links written so far.
func (c *Client) Export(ctx context.Context, w io.Writer, format string, progress func(n int)) (int, error) {
	var cw *csv.Writer
	switch format {
	case "jsonl", "":
	case "csv":
		cw = csv.NewWriter(w)
	default:
		return 0, fmt.Errorf("--format must be jsonl or csv, not %q", format)
	}
	def, err := c.defaultHost(ctx)
	if err != nil {
		return 0, err
	}
	if cw != nil {
		if err := cw.Write(exportColumns); err != nil {
			return 0, fmt.Errorf("write export: %w", err)
		}
	}
	n := 0
	cursor := ""
	for {
		p, err := c.ListLinks(ctx, ListOptions{Limit: 100, Cursor: cursor})
		if err != nil {
			return n, err
		}
		for i, l := range p.Links {
			onDefault := def != "" && strings.EqualFold(l.Domain, def)
			if cw != nil {
				if onDefault {
					l.Domain = ""
				}
				err = cw.Write(exportRow(l))
			} else {
				var line []byte
				if line, err = exportJSON(p.Raw[i], onDefault); err == nil {
					_, err = w.Write(append(line, '\n'))
				}
			}
			if err != nil {
				return n, fmt.Errorf("write export: %w", err)
			}
			n++
		}
		if cw != nil {
			cw.Flush()
			if err := cw.Error(); err != nil {
				return n, fmt.Errorf("write export: %w", err)
			}
		}
		if progress != nil {
			progress(n)
		}
		if p.NextCursor == "" {
			return n, nil
		}
		cursor = p.NextCursor
	}
}

// defaultHost is the host of the hop's default domain, or "" for a hop without
// domains (whose links name none).
func (c *Client) defaultHost(ctx context.Context) (string, error) {
	ds, err := c.Domains(ctx)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("list domains: %w", err)
	}
	for _, d := range ds {
		if d.Default {
			return d.Host, nil
		}
	}
	return "", errors.New("list domains: the server names no default domain")
}

// exportJSON is one link of a page, compacted, its fields in the server's order; a
// link on the default domain loses its "domain".
func exportJSON(raw json.RawMessage, dropDomain bool) ([]byte, error) {
	if !dropDomain {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, fmt.Errorf("link is not JSON: %w", err)
		}
		return buf.Bytes(), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("link is not a JSON object")
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("link is not JSON: %w", err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("link is not JSON: %w", err)
		}
		if tok == "domain" {
			continue
		}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(tok)
		buf.Write(k)
		buf.WriteByte(':')
		if err := json.Compact(&buf, v); err != nil {
			return nil, fmt.Errorf("link is not JSON: %w", err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// exportColumns are the CSV export's columns, all of which `hop import --from csv` reads.
var exportColumns = []string{"url", "slug", "domain", "title", "tags", "created_at", "expires_at", "max_clicks", "imported_clicks",
	"total_clicks", "status", "redirect_status", "forward_query", "expired_url", "has_password", "clicks_used", "short_url"}

func exportRow(l Link) []string {
	t := func(p *time.Time) string {
		if p == nil {
			return ""
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	s := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	maxClicks := ""
	if l.MaxClicks != nil {
		maxClicks = strconv.FormatInt(*l.MaxClicks, 10)
	}
	return []string{l.OriginalURL, l.Slug, l.Domain, s(l.Title), exportTags(l.Tags), t(&l.CreatedAt), t(l.ExpiresAt), maxClicks,
		strconv.FormatInt(l.ImportedClicks, 10), strconv.FormatInt(l.TotalClicks, 10), l.Status, strconv.Itoa(l.RedirectStatus),
		strconv.FormatBool(l.ForwardQuery), s(l.ExpiredURL), strconv.FormatBool(l.HasPassword), strconv.FormatInt(l.ClicksUsed, 10), l.ShortURL}
}

// exportTags writes a link's tags as a JSON array (["news","with,comma"]): a tag may
// hold any of the separators other CSV files use, and the import reads the array back.
func exportTags(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(tags) // strings always encode
	return strings.TrimSuffix(b.String(), "\n")
}
