package links

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/errgroup"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/domains"
)

// Invalidator drops a domain's slug from every instance's redirect cache. The
// redirect module implements it; links calls it after every change a redirect must
// see at once.
type Invalidator interface {
	InvalidateLink(ctx context.Context, domainID int64, slug string) error
}

// Domains names the short domains links live on; domains.Registry implements it.
type Domains interface {
	// Find returns the live domain with host ("" is the default domain), or
	// domains.ErrNotFound.
	Find(ctx context.Context, host string) (domains.Domain, error)
	// ByID returns the domain with id.
	ByID(ctx context.Context, id int64) (domains.Domain, error)
	// Hosts lists every domain's host: hop's own names.
	Hosts() []string
}

// Handler serves the /links management API.
type Handler struct {
	store      *Store
	baseURL    string
	own        []string // hop's own host names, which no link may point to
	cache      Invalidator
	domains    Domains          // nil: one domain, the host of baseURL
	describe   problem.Describe // app's error table
	logger     *slog.Logger
	now        func() time.Time
	bulkBudget time.Duration
}

// bulkBudget is how long a bulk create may work before it answers with what it has
// done: well inside the server's 60 s write timeout, so the client always gets its
// per-item results.
const bulkBudget = 40 * time.Second

// NewHandler returns the API handler; baseURL is the public origin used in short_url.
// describe is app's error table, for the per-item results of a bulk create.
func NewHandler(store *Store, baseURL string, cache Invalidator, describe problem.Describe, logger *slog.Logger) *Handler {
	return &Handler{store: store, baseURL: strings.TrimRight(baseURL, "/"), own: []string{ownHost(baseURL)},
		cache: cache, describe: describe, logger: logger.With("module", "links"), now: time.Now, bulkBudget: bulkBudget}
}

// WithDomains makes h serve links on every domain of d rather than on baseURL's host
// alone.
func (h *Handler) WithDomains(d Domains) *Handler {
	h.domains = d
	return h
}

// domainID returns the id of the domain host names ("" is the default domain).
func (h *Handler) domainID(ctx context.Context, host string) (int64, error) {
	if h.domains == nil {
		if host == "" || strings.EqualFold(host, h.own[0]) {
			return defaultDomainID, nil
		}
		return 0, domains.ErrNotFound
	}
	d, err := h.domains.Find(ctx, host)
	if err != nil {
		return 0, err
	}
	return d.ID, nil
}

// ownHosts are the names no link may point to: hop's own, on every domain.
func (h *Handler) ownHosts() []string {
	if h.domains == nil {
		return h.own
	}
	return append(h.domains.Hosts(), h.own...)
}

// Routes registers the management routes on g, which the app guards with API keys.
func (h *Handler) Routes(g *echo.Group) {
	g.POST("/links", h.create)
	g.POST("/links/", h.create)
	g.POST("/links/bulk", h.bulk)
	g.GET("/links", h.list)
	g.GET("/links/:slug", h.get)
	g.PATCH("/links/:slug", h.update)
	g.DELETE("/links/:slug", h.delete)
	g.GET("/tags", h.tags)
}

// createFields are the fields a create takes; any other is refused by name.
var createFields = map[string]bool{"url": true, "slug": true, "domain": true, "expires_at": true, "max_clicks": true, "password": true,
	"tags": true, "redirect_status": true, "forward_query": true, "expired_url": true,
	"title": true, "created_at": true, "imported_clicks": true}

// UnmarshalJSON decodes a create request, refusing a field it does not take by name.
func (r *NewLink) UnmarshalJSON(b []byte) error {
	if err := knownFields(b, createFields); err != nil {
		return err
	}
	type plain NewLink // without this method
	return json.Unmarshal(b, (*plain)(r))
}

// bulkRequest is the body of POST /links/bulk.
type bulkRequest struct {
	Links []NewLink `json:"links"`
}

// UnmarshalJSON decodes a bulk request, refusing a field it does not take by name.
func (r *bulkRequest) UnmarshalJSON(b []byte) error {
	if err := knownFields(b, map[string]bool{"links": true}); err != nil {
		return err
	}
	type plain bulkRequest
	return json.Unmarshal(b, (*plain)(r))
}

// knownFields refuses a JSON object with a field outside known, naming it. Other
// malformations are left to the decoding that follows, which reports them.
func knownFields(b []byte, known map[string]bool) error {
	var raw map[string]json.RawMessage
	if json.Unmarshal(b, &raw) != nil {
		return nil
	}
	for k := range raw {
		if !known[k] {
			return problem.Invalid("unknown field %q", k)
		}
	}
	return nil
}

func (h *Handler) create(c echo.Context) error {
	var req NewLink
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	l, err := h.Create(c.Request().Context(), req)
	if err != nil {
		return err
	}
	loc := "/links/" + l.Slug
	if d, err := h.domainID(c.Request().Context(), ""); err == nil && d != l.DomainID {
		loc += "?domain=" + url.QueryEscape(l.Domain)
	}
	c.Response().Header().Set(echo.HeaderLocation, loc)
	return c.JSON(http.StatusCreated, l)
}

// createDomain is the domain a link is created on: an unknown one is a 400.
func (h *Handler) createDomain(ctx context.Context, host string) (int64, error) {
	id, err := h.domainID(ctx, host)
	if errors.Is(err, domains.ErrNotFound) {
		return 0, problem.Invalid("domain %q is not a domain of this hop (see GET /domains)", host)
	}
	return id, err
}

func (h *Handler) insert(ctx context.Context, n newLink) (Link, error) {
	l, err := h.store.create(ctx, n)
	if err != nil {
		return Link{}, err
	}
	// The slug may sit in the negative cache from an earlier 404.
	h.invalidate(ctx, l.DomainID, l.Slug)
	return h.present(ctx, l), nil
}

const maxBulk = 1000

// bulkResult is one item of a bulk create response, in request order.
type bulkResult struct {
	Index  int    `json:"index"`
	Status int    `json:"status"`
	Link   *Link  `json:"link,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (h *Handler) bulk(c echo.Context) error {
	var req bulkRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if len(req.Links) == 0 {
		return problem.Invalid("links must hold 1 to %d links to create", maxBulk)
	}
	if len(req.Links) > maxBulk {
		return problem.Invalid("a bulk request holds at most %d links, got %d", maxBulk, len(req.Links))
	}
	ctx := c.Request().Context()
	if c.QueryParam("dry_run") == "true" {
		return h.bulkDryRun(c, req.Links)
	}
	out := struct {
		Created int          `json:"created"`
		Failed  int          `json:"failed"`
		Results []bulkResult `json:"results"`
	}{Results: make([]bulkResult, len(req.Links))}
	// Validate everything, then insert in request order while the passwords are
	// hashed in parallel ahead of the inserts; past the budget the remaining items
	// are answered as not created.
	deadline := h.now().Add(h.bulkBudget)
	late := func() bool { return !h.now().Before(deadline) }
	items := make([]newLink, len(req.Links))
	errs := make([]error, len(req.Links))
	var passwords []string
	for i, r := range req.Links {
		items[i], errs[i] = h.validateCreate(r)
		if errs[i] == nil {
			items[i].DomainID, errs[i] = h.createDomain(ctx, r.Domain)
		}
		if errs[i] == nil && r.Password != "" {
			passwords = append(passwords, r.Password)
		}
	}
	hctx, stop := context.WithTimeout(ctx, h.bulkBudget)
	hashes := hashPasswords(hctx, passwords, late)
	defer hashes.wait()
	defer stop()
	// Items are inserted in chunks, each in one transaction: every run of items that
	// need no password hash goes in together, so a bulk without passwords is one
	// commit. An item with a password closes the chunk before it, since its hash may
	// take a while, and the budget is checked again after each chunk.
	var chunk []int
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if err := h.insertMany(ctx, items, chunk, errs, out.Results); err != nil {
			if ctx.Err() != nil {
				return err // the client is gone
			}
			// Nothing of the chunk was committed: its items failed alike; one log line.
			h.logger.Error("bulk create", "links", len(chunk), "err", err)
			for _, i := range chunk {
				errs[i] = errBulkInternal
			}
		}
		chunk = chunk[:0]
		return nil
	}
	for i, r := range req.Links {
		if errs[i] != nil {
			continue
		}
		if r.Password != "" {
			if err := flush(); err != nil {
				return err
			}
			if items[i].PasswordHash = hashes.get(hctx, r.Password); items[i].PasswordHash == "" {
				errs[i] = ErrOutOfTime
				continue
			}
		}
		if late() {
			errs[i] = ErrOutOfTime
			continue
		}
		chunk = append(chunk, i)
	}
	if err := flush(); err != nil {
		return err
	}
	for i := range out.Results {
		if errs[i] == nil && out.Results[i].Link != nil {
			out.Created++
		}
	}
	for i, err := range errs {
		switch p := h.describe(err); {
		case err == nil:
		case errors.Is(err, errBulkInternal):
			out.Failed++
			out.Results[i] = bulkResult{Index: i, Status: http.StatusInternalServerError, Error: "not created: an internal error occurred; it has been logged"}
		case p.Status < http.StatusInternalServerError || errors.Is(err, ErrOutOfTime):
			out.Failed++
			out.Results[i] = bulkResult{Index: i, Status: p.Status, Error: p.Detail}
		case ctx.Err() != nil:
			return err // the client is gone
		default:
			// The items before were created: answer them rather than fail the lot.
			h.logger.Error("bulk create", "index", i, "err", err)
			out.Failed++
			out.Results[i] = bulkResult{Index: i, Status: http.StatusInternalServerError, Error: "not created: an internal error occurred; it has been logged"}
		}
	}
	status := http.StatusCreated
	if out.Failed > 0 {
		status = http.StatusMultiStatus
	}
	return c.JSON(status, out)
}

// bulkDryRun answers what a bulk create would do, changing nothing: each item is
// validated, and a custom slug that is taken (or repeats an earlier item's) is a 409.
// Items that would be created are answered 201 without a link.
func (h *Handler) bulkDryRun(c echo.Context, reqs []NewLink) error {
	out := struct {
		DryRun  bool         `json:"dry_run"`
		Created int          `json:"created"`
		Failed  int          `json:"failed"`
		Results []bulkResult `json:"results"`
	}{DryRun: true, Results: make([]bulkResult, len(reqs))}
	ctx := c.Request().Context()
	var ids []int64
	var slugs []string
	domainOf := make([]int64, len(reqs))
	domainErr := make([]error, len(reqs))
	for i, r := range reqs {
		domainOf[i], domainErr[i] = h.createDomain(ctx, r.Domain)
		if r.Slug != "" && domainErr[i] == nil {
			ids, slugs = append(ids, domainOr(domainOf[i])), append(slugs, r.Slug)
		}
	}
	taken, err := h.store.takenSlugs(ctx, ids, slugs)
	if err != nil {
		return err
	}
	for i, r := range reqs {
		res := bulkResult{Index: i, Status: http.StatusCreated}
		key := slugOn{domain: domainOr(domainOf[i]), slug: r.Slug}
		if _, err := h.validateCreate(r); err != nil || domainErr[i] != nil {
			p := h.describe(cmp.Or(err, domainErr[i]))
			res.Status, res.Error = p.Status, p.Detail
		} else if r.Slug != "" && taken[key] {
			p := h.describe(ErrSlugTaken)
			res.Status, res.Error = p.Status, p.Detail
		}
		if res.Status == http.StatusCreated {
			out.Created++
			if r.Slug != "" {
				taken[key] = true
			}
		} else {
			out.Failed++
		}
		out.Results[i] = res
	}
	return c.JSON(http.StatusOK, out)
}

// insertMany creates items[i] for each i in ready in one transaction, recording each
// result in results[i] or its error in errs[i], then drops the new slugs from the
// redirect caches, several at a time, since each drop may be a few Redis round trips.
func (h *Handler) insertMany(ctx context.Context, items []newLink, ready []int, errs []error, results []bulkResult) error {
	if len(ready) == 0 {
		return nil
	}
	batch := make([]newLink, len(ready))
	for k, i := range ready {
		batch[k] = items[i]
	}
	links, lerrs, err := h.store.createMany(ctx, batch)
	if err != nil {
		return err
	}
	var created []Link
	for k, i := range ready {
		if errs[i] = lerrs[k]; errs[i] != nil {
			continue
		}
		created = append(created, links[k])
		l := h.present(ctx, links[k])
		results[i] = bulkResult{Index: i, Status: http.StatusCreated, Link: &l}
	}
	h.invalidateNew(ctx, created)
	return nil
}

// ManyInvalidator is an Invalidator that also takes the links of a bulk create at
// once (the redirect module: one Redis round trip instead of a few per link).
type ManyInvalidator interface {
	Created(ctx context.Context, links []Link) error
}

// invalidateNew drops new links' slugs from redirect caches (they may be cached as
// unknown): all at once when the cache can, else several at a time.
func (h *Handler) invalidateNew(ctx context.Context, created []Link) {
	if len(created) == 0 || h.cache == nil {
		return
	}
	if mi, ok := h.cache.(ManyInvalidator); ok {
		if err := mi.Created(ctx, created); err != nil {
			h.logger.Warn("invalidate redirect cache", "links", len(created), "err", err)
		}
		return
	}
	var g errgroup.Group
	g.SetLimit(16)
	for _, l := range created {
		g.Go(func() error { h.invalidate(ctx, l.DomainID, l.Slug); return nil })
	}
	_ = g.Wait()
}

func (h *Handler) list(c echo.Context) error {
	limit := 20
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return problem.Invalid("limit must be an integer from 1 to 100")
		}
		limit = n
	}
	status := c.QueryParam("status")
	switch status {
	case "", StatusActive, StatusExpired, StatusLimitReached:
	default:
		return problem.Invalid("status must be one of %s, %s, %s", StatusActive, StatusExpired, StatusLimitReached)
	}
	lq := listQuery{Q: c.QueryParam("q"), Tag: c.QueryParam("tag"), Status: status}
	if host := c.QueryParam("domain"); host != "" {
		var err error
		if lq.Domain, err = h.domainID(c.Request().Context(), host); err != nil {
			return err
		}
	}
	links, next, err := h.listPage(c.Request().Context(), limit, c.QueryParam("cursor"), lq)
	if err != nil {
		return err
	}
	resp := struct {
		Links      []Link  `json:"links"`
		NextCursor *string `json:"next_cursor"`
	}{Links: links}
	if next != "" {
		resp.NextCursor = &next
	}
	return c.JSON(http.StatusOK, resp)
}

// List returns one page of live links on the default domain, newest first, with their
// short URLs, as GET /links does: limit is 1 to 100, cursor is "" or a next cursor from
// an earlier page, q matches slug or URL, tag is one tag. next is "" on the last page.
// Bad input is a 400 problem.
func (h *Handler) List(ctx context.Context, limit int, cursor, q, tag string) (links []Link, next string, err error) {
	lq := listQuery{Q: q, Tag: tag}
	if lq.Domain, err = h.domainID(ctx, ""); err != nil {
		return nil, "", err
	}
	return h.listPage(ctx, limit, cursor, lq)
}

// listPage is List with every filter of GET /links; lq's Limit and Before come from limit
// and cursor.
func (h *Handler) listPage(ctx context.Context, limit int, cursor string, lq listQuery) (links []Link, next string, err error) {
	if limit < 1 || limit > 100 {
		return nil, "", problem.Invalid("limit must be an integer from 1 to 100")
	}
	q, tag := lq.Q, lq.Tag
	lq.Limit = limit
	if cursor != "" {
		if lq.Before, err = decodeCursor(cursor); err != nil {
			return nil, "", err
		}
	}
	if len(q) > 256 || len(tag) > maxTagLength {
		return nil, "", problem.Invalid("q is at most 256 bytes and tag at most %d", maxTagLength)
	}
	// One extra row tells whether another page exists.
	lq.Limit++
	links, err = h.store.list(ctx, lq)
	if err != nil {
		return nil, "", err
	}
	if len(links) == lq.Limit {
		links = links[:limit]
		next = encodeCursor(links[len(links)-1].ID)
	}
	for i := range links {
		links[i] = h.present(ctx, links[i])
	}
	if links == nil {
		links = []Link{}
	}
	return links, next, nil
}

// Get returns the live link with this slug on the default domain and its short URL;
// ErrNotFound or ErrGone otherwise.
func (h *Handler) Get(ctx context.Context, slug string) (Link, error) {
	return h.GetIn(ctx, "", slug)
}

// GetIn is Get on the domain with host ("" is the default domain).
func (h *Handler) GetIn(ctx context.Context, host, slug string) (Link, error) {
	d, err := h.domainID(ctx, host)
	if err != nil {
		return Link{}, err
	}
	l, err := h.store.get(ctx, d, slug)
	if err != nil {
		return Link{}, err
	}
	return h.present(ctx, l), nil
}

func (h *Handler) get(c echo.Context) error {
	l, err := h.GetIn(c.Request().Context(), c.QueryParam("domain"), c.Param("slug"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, l)
}

// patchable lists the fields PATCH accepts; anything else is refused.
var patchable = map[string]bool{"url": true, "expires_at": true, "max_clicks": true, "password": true, "tags": true, "redirect_status": true,
	"forward_query": true, "expired_url": true}

func (h *Handler) update(c echo.Context) error {
	var raw map[string]json.RawMessage
	if err := decodeJSON(c, &raw); err != nil {
		return err
	}
	if len(raw) == 0 {
		return problem.Invalid("the body must change at least one of url, expires_at, max_clicks, password, tags, redirect_status, forward_query, expired_url")
	}
	for k := range raw {
		if !patchable[k] {
			if k == "slug" {
				return problem.Invalid("a link's slug cannot be changed; create a new link instead")
			}
			return problem.Invalid("unknown field %q", k)
		}
	}
	p, err := parsePatch(raw)
	if err != nil {
		return err
	}
	l, err := h.UpdateIn(c.Request().Context(), c.QueryParam("domain"), c.Param("slug"), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, l)
}

// parsePatch decodes a PATCH body's fields, each with its JSON type checked and null
// read as documented; Update validates the values.
func parsePatch(raw map[string]json.RawMessage) (Patch, error) {
	var p Patch
	isNull := func(m json.RawMessage) bool { return string(m) == "null" }
	field := func(name string, v any) error {
		if err := json.Unmarshal(raw[name], v); err != nil {
			return problem.Invalid("%s has the wrong type: %s", name, jsonTypeError(err))
		}
		return nil
	}
	if m, ok := raw["url"]; ok {
		var u string
		if isNull(m) {
			return p, problem.Invalid("url cannot be null")
		}
		if err := field("url", &u); err != nil {
			return p, err
		}
		p.URL = &u
	}
	if m, ok := raw["redirect_status"]; ok {
		var s int // null: 0, the default
		if !isNull(m) {
			if err := field("redirect_status", &s); err != nil {
				return p, err
			}
			if s == 0 {
				s = -1 // an explicit 0 is not a status: let validation refuse it
			}
		}
		p.RedirectStatus = &s
	}
	if _, ok := raw["expires_at"]; ok {
		var t *time.Time
		if err := field("expires_at", &t); err != nil {
			return p, err
		}
		p.ExpiresAt = &t
	}
	if _, ok := raw["max_clicks"]; ok {
		var n *int64
		if err := field("max_clicks", &n); err != nil {
			return p, err
		}
		p.MaxClicks = &n
	}
	if _, ok := raw["password"]; ok {
		var pw *string
		if err := field("password", &pw); err != nil {
			return p, err
		}
		if pw == nil {
			pw = new(string)
		}
		p.Password = pw
	}
	if m, ok := raw["forward_query"]; ok {
		var fq bool
		if isNull(m) {
			return p, problem.Invalid("forward_query cannot be null; send true or false")
		}
		if err := field("forward_query", &fq); err != nil {
			return p, err
		}
		p.ForwardQuery = &fq
	}
	if _, ok := raw["expired_url"]; ok {
		var u *string
		if err := field("expired_url", &u); err != nil {
			return p, err
		}
		p.ExpiredURL = &u
	}
	if m, ok := raw["tags"]; ok {
		var tags []string
		if !isNull(m) {
			if err := field("tags", &tags); err != nil {
				return p, err
			}
		}
		p.Tags = &tags
	}
	return p, nil
}

func (h *Handler) delete(c echo.Context) error {
	if err := h.DeleteIn(c.Request().Context(), c.QueryParam("domain"), c.Param("slug")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *Handler) tags(c echo.Context) error {
	tags, err := h.store.tags(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"tags": tags})
}

// invalidate drops the slug from redirect caches. A failure only delays the change
// until the cache entry expires, so it is logged, not returned.
func (h *Handler) invalidate(ctx context.Context, domainID int64, slug string) {
	if h.cache == nil {
		return
	}
	if err := h.cache.InvalidateLink(ctx, domainID, slug); err != nil {
		h.logger.Warn("invalidate redirect cache", "slug", slug, "domain_id", domainID, "err", err)
	}
}

// present fills what the API derives: the domain's host, the short URL on the
// domain's base URL, and the status.
func (h *Handler) present(ctx context.Context, l Link) Link {
	l.Domain, l.ShortURL = h.own[0], h.baseURL+"/"+l.Slug
	if h.domains != nil {
		if d, err := h.domains.ByID(ctx, l.DomainID); err == nil {
			l.Domain, l.ShortURL = d.Host, d.BaseURL+"/"+l.Slug
		}
	}
	l.Status = statusAt(l, h.now())
	return l
}

func hashPassword(pw string) (string, error) {
	if err := validatePassword(pw); err != nil {
		return "", err
	}
	b, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(b), nil
}

// errBulkInternal marks the items of a bulk create whose chunk failed in PostgreSQL;
// the failure is logged once for the chunk.
var errBulkInternal = errors.New("bulk insert failed")

// hashPasswords starts hashing each distinct password once, in order of first use, on
// as many goroutines as there are CPUs: bcrypt is deliberately slow, and a bulk of
// 1,000 protected links hashed one after another outlasts the server's write timeout.
// Links of one request with the same password share its hash. Once ctx ends or late
// reports true no more hashing starts.
func hashPasswords(ctx context.Context, passwords []string, late func() bool) *hashing {
	hs := &hashing{jobs: make(map[string]*hashJob, len(passwords))}
	var order []*hashJob
	for _, pw := range passwords {
		if _, ok := hs.jobs[pw]; !ok {
			j := &hashJob{pw: pw, done: make(chan struct{})}
			hs.jobs[pw] = j
			order = append(order, j)
		}
	}
	hs.g.SetLimit(runtime.GOMAXPROCS(0))
	hs.started = make(chan struct{})
	go func() {
		defer close(hs.started)
		for _, j := range order {
			hs.g.Go(func() error {
				defer close(j.done)
				if ctx.Err() == nil && !late() {
					j.hash, _ = hashPassword(j.pw) // validated already
				}
				return nil
			})
		}
	}()
	return hs
}

// hashing is the passwords of one bulk request being hashed.
type hashing struct {
	jobs    map[string]*hashJob
	g       errgroup.Group
	started chan struct{}
}

type hashJob struct {
	pw, hash string
	done     chan struct{}
}

// get waits for pw's hash; "" when it was not made in time.
func (hs *hashing) get(ctx context.Context, pw string) string {
	j := hs.jobs[pw]
	select {
	case <-j.done:
		return j.hash
	case <-ctx.Done():
		return ""
	}
}

// wait returns once no hashing runs any more.
func (hs *hashing) wait() {
	<-hs.started
	_ = hs.g.Wait()
}

// CheckPassword reports whether pw matches a link's password hash.
func CheckPassword(hash, pw string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// decodeJSON reads exactly one JSON value into v, refusing other media types, trailing
// data and oversized bodies, each with a problem that says why. Unknown fields are
// refused by the request types themselves (see NewLink.UnmarshalJSON), which can
// name them.
func decodeJSON(c echo.Context, v any) error {
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || (mt != echo.MIMEApplicationJSON && !strings.HasSuffix(mt, "+json")) {
		return problem.With(problem.ErrUnsupportedMedia, "the request body must be JSON (Content-Type: application/json)")
	}
	dec := json.NewDecoder(c.Request().Body)
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return jsonProblem(err)
		}
		return problem.Invalid("the body must hold a single JSON value")
	}
	return nil
}

func jsonProblem(err error) error {
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	var syn *json.SyntaxError
	if _, ok := problem.DetailOf(err); ok {
		return err // already says what is wrong, e.g. an unknown field
	}
	switch {
	case errors.As(err, &he), errors.As(err, &mbe):
		return problem.With(problem.ErrTooLarge, "the request body is larger than the limit")
	case errors.Is(err, os.ErrDeadlineExceeded):
		return problem.With(problem.ErrBodyTimeout, "the request body did not arrive in time")
	case errors.Is(err, io.EOF):
		return problem.Invalid("the request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.Invalid("malformed JSON: the body ends early")
	case errors.As(err, &syn):
		return problem.Invalid("malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	}
	return problem.Invalid("%s", jsonTypeError(err))
}

func jsonTypeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return fmt.Sprintf("expected %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return "times must be RFC 3339, like 2030-01-02T15:04:05Z"
	}
	return err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int", "int64", "int16", "int32":
		return "an integer"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	case "ptr":
		return "a value of the documented type"
	}
	return k
}
