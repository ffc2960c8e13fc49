// Package client talks to a running hop through its REST API: the links commands of
// the CLI, `hop export`, and `hop import`, which reads other shorteners' exports
// (readers per format) and creates their links in idempotent bulk batches. It needs
// only a base URL and an API key, so it works against a remote hop.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Client calls one hop's API with one API key.
type Client struct {
	// Retry is how reads (GET) and import batches are repeated when hop answers 429,
	// 5xx or nothing; set it before the client is used. The zero value has defaults.
	Retry Retry

	base string
	key  string
	http *http.Client
	// answered is set once the server has answered anything; shared by copies. Until
	// then a refused connection means nothing listens at base (a wrong URL, a stopped
	// hop), which waiting does not cure; after, it means a hop restarting, which it may.
	answered *atomic.Bool
}

// New returns a client of the hop at baseURL (such as http://localhost:8080). hc may
// be nil: a client with a 2-minute timeout, above the server's own write timeout.
func New(baseURL, key string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), key: key, http: hc, answered: new(atomic.Bool)}
}

// Error is an API error: the problem document hop answered with (RFC 9457), or the
// status alone when the body was not one.
type Error struct {
	Status int    `json:"status"`
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	// RetryAfter is the answer's Retry-After (a 429, a 503), 0 when it had none.
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string {
	t := e.Title
	if t == "" {
		t = http.StatusText(e.Status)
	}
	if e.Detail == "" {
		return t
	}
	return t + ": " + e.Detail
}

// ErrNotFound matches an Error with status 404 (errors.Is).
var ErrNotFound = errors.New("not found")

// Is lets errors.Is(err, ErrNotFound) match a 404.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// LinkRequest is the body of a create: POST /links, or one item of /links/bulk.
type LinkRequest struct {
	URL            string     `json:"url"`
	Slug           string     `json:"slug,omitempty"`
	Domain         string     `json:"domain,omitempty"`
	Title          string     `json:"title,omitempty"`
	Tags           []string   `json:"tags,omitempty"`
	CreatedAt      *time.Time `json:"created_at,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	MaxClicks      *int64     `json:"max_clicks,omitempty"`
	RedirectStatus int        `json:"redirect_status,omitempty"`
	ForwardQuery   *bool      `json:"forward_query,omitempty"`
	ExpiredURL     *string    `json:"expired_url,omitempty"`
	ImportedClicks int64      `json:"imported_clicks,omitempty"`
	ClicksUsed     int64      `json:"clicks_used,omitempty"` // of MaxClicks, at the source
}

// Link is a link as the API returns it.
type Link struct {
	ID             int64      `json:"id"`
	Slug           string     `json:"slug"`
	Domain         string     `json:"domain,omitempty"`
	ShortURL       string     `json:"short_url"`
	OriginalURL    string     `json:"original_url"`
	Title          *string    `json:"title"`
	RedirectStatus int        `json:"redirect_status"`
	ExpiresAt      *time.Time `json:"expires_at"`
	MaxClicks      *int64     `json:"max_clicks"`
	Status         string     `json:"status"`
	ClicksUsed     int64      `json:"clicks_used"`
	ForwardQuery   bool       `json:"forward_query"`
	ExpiredURL     *string    `json:"expired_url"`
	HasPassword    bool       `json:"has_password"`
	Tags           []string   `json:"tags"`
	TotalClicks    int64      `json:"total_clicks"`
	ImportedClicks int64      `json:"imported_clicks"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// do sends a request and decodes a 2xx JSON answer into out (if not nil); any other
// answer is an *Error. hdr holds extra header pairs. A GET changes nothing, so it is
// sent again as c.Retry says; other methods are retried by their callers, which know
// when that is safe.
func (c *Client) do(ctx context.Context, method, path string, body, out any, hdr ...string) (*http.Response, error) {
	if method != http.MethodGet {
		return c.send(ctx, method, path, body, out, hdr...)
	}
	var resp *http.Response
	err := c.Retry.retry(ctx, c.transient, func() (err error) {
		resp, err = c.send(ctx, method, path, body, out, hdr...)
		return err
	})
	return resp, err
}

// send makes one attempt of do.
func (c *Client) send(ctx context.Context, method, path string, body, out any, hdr ...string) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) && !c.answered.Load() {
			return nil, fmt.Errorf("nothing answers at %s (is hop running there? set --url or HOP_URL): %w", c.base, err)
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	c.answered.Store(true)
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, e) != nil || e.Title == "" {
			e.Title = http.StatusText(resp.StatusCode)
			e.Detail = strings.TrimSpace(string(b))
			if len(e.Detail) > 200 {
				e.Detail = e.Detail[:200]
			}
		}
		e.Status = resp.StatusCode
		e.RetryAfter = retryAfter(resp.Header)
		return resp, e
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp, nil
}

// CreateLink creates one link.
func (c *Client) CreateLink(ctx context.Context, r LinkRequest) (Link, error) {
	var l Link
	_, err := c.do(ctx, http.MethodPost, "/links", r, &l)
	return l, err
}

// GetLink returns the live link with this slug.
func (c *Client) GetLink(ctx context.Context, slug, domain string) (Link, error) {
	var l Link
	_, err := c.do(ctx, http.MethodGet, "/links/"+url.PathEscape(slug)+domainQuery("?", domain), nil, &l)
	return l, err
}

// DeleteLink deletes the link with this slug (its slug stays reserved).
func (c *Client) DeleteLink(ctx context.Context, slug, domain string) error {
	_, err := c.do(ctx, http.MethodDelete, "/links/"+url.PathEscape(slug)+domainQuery("?", domain), nil, nil)
	return err
}

func domainQuery(sep, domain string) string {
	if domain == "" {
		return ""
	}
	return sep + "domain=" + url.QueryEscape(domain)
}

// Domain is a short domain of the hop, as GET /domains lists it.
type Domain struct {
	Host    string `json:"host"`
	BaseURL string `json:"base_url"`
	Default bool   `json:"default"`
}

// Domains lists the hop's live domains; exactly one is its default domain (the host of
// its HOP_BASE_URL).
func (c *Client) Domains(ctx context.Context) ([]Domain, error) {
	var body struct {
		Domains []Domain `json:"domains"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/domains", nil, &body); err != nil {
		return nil, err
	}
	return body.Domains, nil
}

// ListOptions filters a list of links.
type ListOptions struct {
	Limit  int // 1-100; 0: the server's default
	Cursor string
	Q      string
	Tag    string
	Domain string
}

// Page is one page of links; NextCursor is "" on the last. Raw holds each link as
// the server sent it, fields this client does not know included.
type Page struct {
	Links      []Link
	Raw        []json.RawMessage
	NextCursor string
}

// ListLinks returns one page of live links, newest first.
func (c *Client) ListLinks(ctx context.Context, o ListOptions) (Page, error) {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", fmt.Sprint(o.Limit))
	}
	for k, v := range map[string]string{"cursor": o.Cursor, "q": o.Q, "tag": o.Tag, "domain": o.Domain} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/links"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var body struct {
		Links      []json.RawMessage `json:"links"`
		NextCursor *string           `json:"next_cursor"`
	}
	if _, err := c.do(ctx, http.MethodGet, path, nil, &body); err != nil {
		return Page{}, err
	}
	p := Page{Raw: body.Links, Links: make([]Link, len(body.Links))}
	for i, raw := range body.Links {
		if err := json.Unmarshal(raw, &p.Links[i]); err != nil {
			return Page{}, fmt.Errorf("decode link: %w", err)
		}
	}
	if body.NextCursor != nil {
		p.NextCursor = *body.NextCursor
	}
	return p, nil
}

// StatsOptions selects the range of a link's stats; empty fields take the server's
// defaults.
type StatsOptions struct {
	Start, End, TZ, Domain string
}

// Stats is a link's analytics for a range, as GET /links/{slug}/stats answers it.
type Stats struct {
	Slug           string `json:"slug"`
	Start          string `json:"start"`
	End            string `json:"end"`
	TZ             string `json:"tz"`
	TotalClicks    int64  `json:"total_clicks"`
	UniqueVisitors int64  `json:"unique_visitors"`
	BotClicks      int64  `json:"bot_clicks"`
	Daily          []struct {
		Date           string `json:"date"`
		Clicks         int64  `json:"clicks"`
		UniqueVisitors int64  `json:"unique_visitors"`
	} `json:"daily"`
	Countries map[string]int64 `json:"countries"`
	Referers  map[string]int64 `json:"referers"`
	Browsers  map[string]int64 `json:"browsers"`
	OS        map[string]int64 `json:"os"`
	Devices   map[string]int64 `json:"devices"`
}

// LinkStats returns a link's stats; raw is the answer as sent, for --json.
func (c *Client) LinkStats(ctx context.Context, slug string, o StatsOptions) (s Stats, raw json.RawMessage, err error) {
	q := url.Values{}
	for k, v := range map[string]string{"start": o.Start, "end": o.End, "tz": o.TZ, "domain": o.Domain} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/links/" + url.PathEscape(slug) + "/stats"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if _, err := c.do(ctx, http.MethodGet, path, nil, &raw); err != nil {
		return Stats{}, nil, err
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return Stats{}, nil, fmt.Errorf("decode stats: %w", err)
	}
	return s, raw, nil
}

// BulkResult is one item's outcome in a bulk create.
type BulkResult struct {
	Index  int    `json:"index"`
	Status int    `json:"status"`
	Link   *Link  `json:"link,omitempty"`
	Error  string `json:"error,omitempty"`
}

// BulkAnswer is the answer to POST /links/bulk. Replayed is true when the server
// answered from its Idempotency-Key record: this request created nothing.
type BulkAnswer struct {
	Created  int          `json:"created"`
	Failed   int          `json:"failed"`
	Results  []BulkResult `json:"results"`
	Replayed bool         `json:"-"`
}

// Bulk creates up to 1,000 links in one request under an Idempotency-Key (empty: none).
// With dryRun the server only reports what it would do.
func (c *Client) Bulk(ctx context.Context, items []LinkRequest, idemKey string, dryRun bool) (BulkAnswer, error) {
	path := "/links/bulk"
	if dryRun {
		path += "?dry_run=true"
	}
	var hdr []string
	if idemKey != "" {
		hdr = []string{"Idempotency-Key", idemKey}
	}
	var a BulkAnswer
	resp, err := c.do(ctx, http.MethodPost, path, struct {
		Links []LinkRequest `json:"links"`
	}{items}, &a, hdr...)
	if err != nil {
		return a, err
	}
	a.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	if len(a.Results) != len(items) {
		return a, fmt.Errorf("bulk create: %d results for %d links", len(a.Results), len(items))
	}
	return a, nil
}
