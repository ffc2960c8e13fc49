package links

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/errgroup"

	"github.com/hop-dev/hop/internal/jsonbody"
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

// Handler serves the /links management API: HTTP glue over a Service.
type Handler struct {
	svc        *Service
	describe   problem.Describe // app's error table
	logger     *slog.Logger
	bulkBudget time.Duration
}

// bulkBudget is how long a bulk create may work before it answers with what it has
// done: well inside the server's 60 s write timeout, so the client always gets its
// per-item results.
const bulkBudget = 40 * time.Second

// NewHandler returns the API handler over svc. describe is app's error table, for the
// per-item results of a bulk create.
func NewHandler(svc *Service, describe problem.Describe, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{svc: svc, describe: describe, logger: logger.With("module", "links"), bulkBudget: bulkBudget}
}

// Routes registers the management routes on g behind mw, which authenticates.
func (h *Handler) Routes(g *echo.Group, mw ...echo.MiddlewareFunc) {
	get := []string{http.MethodGet, http.MethodHead}
	g.POST("/links", h.create, mw...)
	g.POST("/links/", h.create, mw...)
	g.POST("/links/bulk", h.bulk, mw...)
	g.Match(get, "/links", h.list, mw...)
	g.Match(get, "/links/:slug", h.get, mw...)
	g.PATCH("/links/:slug", h.update, mw...)
	g.DELETE("/links/:slug", h.delete, mw...)
	g.Match(get, "/tags", h.tags, mw...)
}

// createFields are the fields a create takes; any other is refused by name.
var createFields = map[string]bool{"url": true, "slug": true, "domain": true, "expires_at": true, "max_clicks": true, "password": true,
	"tags": true, "redirect_status": true, "forward_query": true, "expired_url": true,
	"title": true, "created_at": true, "imported_clicks": true, "clicks_used": true}

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
	l, err := h.svc.Create(c.Request().Context(), req)
	if err != nil {
		return err
	}
	loc := "/links/" + l.Slug
	if d, err := h.svc.domainID(c.Request().Context(), ""); err == nil && d != l.DomainID {
		loc += "?domain=" + url.QueryEscape(l.Domain)
	}
	c.Response().Header().Set(echo.HeaderLocation, loc)
	return c.JSON(http.StatusCreated, l)
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
	// Anything but true or false is refused: a typo must not turn a trial into
	// a thousand real links.
	dryRun := c.QueryParam("dry_run")
	if c.QueryParams().Has("dry_run") && dryRun != "true" && dryRun != "false" {
		return problem.Invalid("dry_run must be true or false, got %q", dryRun)
	}
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
	if dryRun == "true" {
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
	deadline := h.svc.now().Add(h.bulkBudget)
	late := func() bool { return !h.svc.now().Before(deadline) }
	items := make([]newLink, len(req.Links))
	errs := make([]error, len(req.Links))
	var passwords []string
	for i, r := range req.Links {
		items[i], errs[i] = h.svc.validateCreate(r)
		if errs[i] == nil {
			items[i].DomainID, errs[i] = h.svc.createDomain(ctx, r.Domain)
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
		domainOf[i], domainErr[i] = h.svc.createDomain(ctx, r.Domain)
		if r.Slug != "" && domainErr[i] == nil {
			ids, slugs = append(ids, domainOr(domainOf[i])), append(slugs, r.Slug)
		}
	}
	taken, err := h.svc.store.takenSlugs(ctx, ids, slugs)
	if err != nil {
		return err
	}
	for i, r := range reqs {
		res := bulkResult{Index: i, Status: http.StatusCreated}
		key := slugOn{domain: domainOr(domainOf[i]), slug: r.Slug}
		if _, err := h.svc.validateCreate(r); err != nil || domainErr[i] != nil {
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
// result in results[i] or its error in errs[i].
func (h *Handler) insertMany(ctx context.Context, items []newLink, ready []int, errs []error, results []bulkResult) error {
	if len(ready) == 0 {
		return nil
	}
	batch := make([]newLink, len(ready))
	for k, i := range ready {
		batch[k] = items[i]
	}
	links, lerrs, err := h.svc.insertMany(ctx, batch)
	if err != nil {
		return err
	}
	for k, i := range ready {
		if errs[i] = lerrs[k]; errs[i] == nil {
			results[i] = bulkResult{Index: i, Status: http.StatusCreated, Link: &links[k]}
		}
	}
	return nil
}

// ManyInvalidator is an Invalidator that also takes the links of a bulk create at
// once (the redirect module: one Redis round trip instead of a few per link).
type ManyInvalidator interface {
	Created(ctx context.Context, links []Link) error
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
	page, err := h.svc.List(c.Request().Context(), ListQuery{Domain: c.QueryParam("domain"), Limit: limit,
		Cursor: c.QueryParam("cursor"), Q: c.QueryParam("q"), Tag: c.QueryParam("tag"), Status: c.QueryParam("status")})
	if err != nil {
		return err
	}
	resp := struct {
		Links      []Link  `json:"links"`
		NextCursor *string `json:"next_cursor"`
	}{Links: page.Links}
	if page.NextCursor != "" {
		resp.NextCursor = &page.NextCursor
	}
	return c.JSON(http.StatusOK, resp)
}

func (h *Handler) get(c echo.Context) error {
	l, err := h.svc.Get(c.Request().Context(), c.QueryParam("domain"), c.Param("slug"))
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
	l, err := h.svc.Update(c.Request().Context(), c.QueryParam("domain"), c.Param("slug"), p)
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
	field := func(name string, v any) error { return jsonbody.Field(name, raw[name], v) }
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
	if err := h.svc.Delete(c.Request().Context(), c.QueryParam("domain"), c.Param("slug")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *Handler) tags(c echo.Context) error {
	tags, err := h.svc.Tags(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"tags": tags})
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

// decodeJSON reads a request body; unknown fields are refused by the request types
// themselves (see NewLink.UnmarshalJSON), which can name them.
func decodeJSON(c echo.Context, v any) error { return jsonbody.Decode(c, v, false) }
