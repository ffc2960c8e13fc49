package links

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/domains"
)

// Service is what can be done with links, on any domain of this hop: create, read,
// list, change and delete them. The /links handlers are HTTP glue over it, and the
// dashboard calls the same methods, so validation and messages are the API's. A link
// is named by its domain's host ("" is the default domain) and its slug.
type Service struct {
	store   *Store
	baseURL string
	own     []string // hop's own host names, which no link may point to
	cache   Invalidator
	domains Domains // nil: one domain, the host of baseURL
	logger  *slog.Logger
	now     func() time.Time
}

// NewService returns the links service; baseURL is the public origin used in
// short_url, cache (may be nil) drops changed links from the redirect caches.
func NewService(store *Store, baseURL string, cache Invalidator, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, baseURL: strings.TrimRight(baseURL, "/"), own: []string{ownHost(baseURL)},
		cache: cache, logger: logger.With("module", "links"), now: time.Now}
}

// WithDomains makes s serve links on every domain of d rather than on baseURL's host
// alone.
func (s *Service) WithDomains(d Domains) *Service {
	s.domains = d
	return s
}

// domainID returns the id of the domain host names ("" is the default domain).
func (s *Service) domainID(ctx context.Context, host string) (int64, error) {
	if s.domains == nil {
		if host == "" || strings.EqualFold(host, s.own[0]) {
			return defaultDomainID, nil
		}
		return 0, domains.ErrNotFound
	}
	d, err := s.domains.Find(ctx, host)
	if err != nil {
		return 0, err
	}
	return d.ID, nil
}

// ownHosts are the names no link may point to: hop's own, on every domain.
func (s *Service) ownHosts() []string {
	if s.domains == nil {
		return s.own
	}
	return append(s.domains.Hosts(), s.own...)
}

// NewLink is everything a link can be created with: the body of POST /links, and what
// the dashboard's form submits. Create validates it; zero values mean the defaults.
type NewLink struct {
	URL            string     `json:"url"`
	Slug           string     `json:"slug"`   // empty: generate one
	Domain         string     `json:"domain"` // host of a domain of this hop; empty: the default domain
	ExpiresAt      *time.Time `json:"expires_at"`
	MaxClicks      *int64     `json:"max_clicks"`
	Password       string     `json:"password"` // plain; only its bcrypt hash is stored
	Tags           []string   `json:"tags"`
	RedirectStatus int        `json:"redirect_status"` // 0: 302
	ForwardQuery   *bool      `json:"forward_query"`   // nil: true
	ExpiredURL     *string    `json:"expired_url"`     // nil or "": none
	Title          *string    `json:"title"`
	CreatedAt      *time.Time `json:"created_at"`      // imports keep the source's date
	ImportedClicks *int64     `json:"imported_clicks"` // the source's click total
	// ClicksUsed is how much of max_clicks the source had used, so an imported link
	// does not get its whole limit again.
	ClicksUsed *int64 `json:"clicks_used"`
}

// Patch is a partial update of a link, as PATCH /links/{slug} and the dashboard's edit
// form send it: a nil field is left unchanged. Update validates it.
type Patch struct {
	URL            *string
	RedirectStatus *int        // 0: back to the default, 302
	ExpiresAt      **time.Time // points to nil: no expiry
	MaxClicks      **int64     // points to nil: no limit
	Password       *string     // "": no password
	Tags           *[]string   // points to nil or empty: no tags
	ForwardQuery   *bool
	ExpiredURL     **string // points to nil or "": none
}

// Create validates n and stores the link on n.Domain, as POST /links does.
// Validation failures and taken slugs are *problem.Error values; an unknown domain is
// a 400.
func (s *Service) Create(ctx context.Context, n NewLink) (Link, error) {
	v, err := s.validateCreate(n)
	if err != nil {
		return Link{}, err
	}
	if v.DomainID, err = s.createDomain(ctx, n.Domain); err != nil {
		return Link{}, err
	}
	if n.Password != "" {
		if v.PasswordHash, err = hashPassword(n.Password); err != nil {
			return Link{}, err
		}
	}
	return s.insert(ctx, v)
}

// createDomain is the domain a link is created on: an unknown one is a 400.
func (s *Service) createDomain(ctx context.Context, host string) (int64, error) {
	id, err := s.domainID(ctx, host)
	if errors.Is(err, domains.ErrNotFound) {
		return 0, problem.Invalid("domain %q is not a domain of this hop (see GET /domains)", host)
	}
	return id, err
}

func (s *Service) insert(ctx context.Context, n newLink) (Link, error) {
	l, err := s.store.create(ctx, n)
	if err != nil {
		return Link{}, err
	}
	// The slug may sit in the negative cache from an earlier 404.
	s.invalidate(ctx, l.DomainID, l.Slug)
	return s.present(ctx, l), nil
}

// Get returns the live link with this slug on the domain with host ("" is the
// default domain) and its short URL, as GET /links/{slug} does; ErrNotFound or
// ErrGone otherwise, and domains.ErrNotFound for an unknown host.
func (s *Service) Get(ctx context.Context, host, slug string) (Link, error) {
	d, err := s.domainID(ctx, host)
	if err != nil {
		return Link{}, err
	}
	l, err := s.store.get(ctx, d, slug)
	if err != nil {
		return Link{}, err
	}
	return s.present(ctx, l), nil
}

// ListQuery asks for one page of live links, newest first, as GET /links does.
type ListQuery struct {
	Domain string // a host: that domain's links only; "": every domain
	Limit  int    // 1 to 100
	Cursor string // "" or the NextCursor of an earlier page
	Q      string // part of the slug or URL
	Tag    string // one tag
	Status string // "" or StatusActive, StatusExpired, StatusLimitReached
}

// Page is one page of links with their short URLs; NextCursor is "" on the last.
type Page struct {
	Links      []Link
	NextCursor string
}

// List returns one page of live links, as GET /links does. Bad input is a 400
// problem; an unknown domain is domains.ErrNotFound.
func (s *Service) List(ctx context.Context, q ListQuery) (Page, error) {
	switch q.Status {
	case "", StatusActive, StatusExpired, StatusLimitReached:
	default:
		return Page{}, problem.Invalid("status must be one of %s, %s, %s", StatusActive, StatusExpired, StatusLimitReached)
	}
	lq := listQuery{Q: q.Q, Tag: q.Tag, Status: q.Status}
	if q.Domain != "" {
		var err error
		if lq.Domain, err = s.domainID(ctx, q.Domain); err != nil {
			return Page{}, err
		}
	}
	links, next, err := s.listPage(ctx, q.Limit, q.Cursor, lq)
	return Page{Links: links, NextCursor: next}, err
}

// listPage reads one page for lq; lq's Limit and Before come from limit and cursor.
func (s *Service) listPage(ctx context.Context, limit int, cursor string, lq listQuery) (links []Link, next string, err error) {
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
	links, err = s.store.list(ctx, lq)
	if err != nil {
		return nil, "", err
	}
	if len(links) == lq.Limit {
		links = links[:limit]
		next = encodeCursor(links[len(links)-1].ID)
	}
	for i := range links {
		links[i] = s.present(ctx, links[i])
	}
	if links == nil {
		links = []Link{}
	}
	return links, next, nil
}

// Update validates p and applies it to the live link with this slug on the domain
// with host ("" is the default domain), as PATCH /links/{slug} does; every redirect
// cache drops the link at once.
func (s *Service) Update(ctx context.Context, host, slug string, p Patch) (Link, error) {
	d, err := s.domainID(ctx, host)
	if err != nil {
		return Link{}, err
	}
	lp, err := s.validatePatch(p)
	if err != nil {
		return Link{}, err
	}
	l, err := s.store.update(ctx, d, slug, lp)
	if err != nil {
		return Link{}, err
	}
	s.invalidate(ctx, l.DomainID, l.Slug)
	return s.present(ctx, l), nil
}

// Delete soft-deletes the live link with this slug on the domain with host ("" is
// the default domain), as DELETE /links/{slug} does: the slug answers 410 from then
// on and is never reused on that domain.
func (s *Service) Delete(ctx context.Context, host, slug string) error {
	d, err := s.domainID(ctx, host)
	if err != nil {
		return err
	}
	if err := s.store.delete(ctx, d, slug); err != nil {
		return err
	}
	s.invalidate(ctx, d, slug)
	return nil
}

// invalidate drops the slug from redirect caches. A failure only delays the change
// until the cache entry expires, so it is logged, not returned.
func (s *Service) invalidate(ctx context.Context, domainID int64, slug string) {
	if s.cache == nil {
		return
	}
	if err := s.cache.InvalidateLink(ctx, domainID, slug); err != nil {
		s.logger.Warn("invalidate redirect cache", "slug", slug, "domain_id", domainID, "err", err)
	}
}

// present fills what the API derives: the domain's host, the short URL on the
// domain's base URL, and the status.
func (s *Service) present(ctx context.Context, l Link) Link {
	l.Domain, l.ShortURL = s.own[0], s.baseURL+"/"+l.Slug
	if s.domains != nil {
		if d, err := s.domains.ByID(ctx, l.DomainID); err == nil {
			l.Domain, l.ShortURL = d.Host, d.BaseURL+"/"+l.Slug
		}
	}
	l.Status = statusAt(l, s.now())
	return l
}

// Tags returns every tag of live links with its link count, as GET /tags does.
func (s *Service) Tags(ctx context.Context) ([]TagCount, error) { return s.store.tags(ctx) }

// insertMany stores validated links in one transaction, as a bulk create does. A link
// the store refused has its error in errs and a zero Link; the others are presented
// with their short URLs, and their slugs dropped from the redirect caches.
func (s *Service) insertMany(ctx context.Context, batch []newLink) (links []Link, errs []error, err error) {
	links, errs, err = s.store.createMany(ctx, batch)
	if err != nil {
		return nil, nil, err
	}
	created := make([]Link, 0, len(links))
	for k := range links {
		if errs[k] == nil {
			created = append(created, links[k])
			links[k] = s.present(ctx, links[k])
		}
	}
	s.invalidateNew(ctx, created)
	return links, errs, nil
}

// invalidateNew drops new links' slugs from redirect caches (they may be cached as
// unknown): all at once when the cache can, else several at a time.
func (s *Service) invalidateNew(ctx context.Context, created []Link) {
	if len(created) == 0 || s.cache == nil {
		return
	}
	if mi, ok := s.cache.(ManyInvalidator); ok {
		if err := mi.Created(ctx, created); err != nil {
			s.logger.Warn("invalidate redirect cache", "links", len(created), "err", err)
		}
		return
	}
	var g errgroup.Group
	g.SetLimit(16)
	for _, l := range created {
		g.Go(func() error { s.invalidate(ctx, l.DomainID, l.Slug); return nil })
	}
	_ = g.Wait()
}

// validateCreate checks a create request; the password is checked but left to the
// caller to hash.
func (s *Service) validateCreate(r NewLink) (newLink, error) {
	n := newLink{URL: r.URL, Slug: r.Slug, ExpiresAt: r.ExpiresAt, MaxClicks: r.MaxClicks, RedirectStatus: r.RedirectStatus, ForwardQuery: true}
	if err := validateURL(r.URL); err != nil {
		return n, err
	}
	if err := notOwnHost(r.URL, s.ownHosts()); err != nil {
		return n, err
	}
	if r.ForwardQuery != nil {
		n.ForwardQuery = *r.ForwardQuery
	}
	if r.ExpiredURL != nil && *r.ExpiredURL != "" {
		if err := validateExpiredURL(*r.ExpiredURL, s.ownHosts()); err != nil {
			return n, err
		}
		n.ExpiredURL = r.ExpiredURL
	}
	if r.Slug != "" {
		if err := validateSlug(r.Slug); err != nil {
			return n, err
		}
	}
	if n.RedirectStatus == 0 {
		n.RedirectStatus = http.StatusFound
	}
	if err := validateStatus(n.RedirectStatus); err != nil {
		return n, err
	}
	if err := s.validateImported(r, &n); err != nil {
		return n, err
	}
	if r.ExpiresAt != nil && r.CreatedAt == nil {
		if err := validateExpiry(*r.ExpiresAt, s.now()); err != nil {
			return n, err
		}
	}
	if r.MaxClicks != nil {
		if err := validateMaxClicks(*r.MaxClicks); err != nil {
			return n, err
		}
	}
	tags, err := normalizeTags(r.Tags)
	if err != nil {
		return n, err
	}
	n.Tags = tags
	if r.Password != "" {
		if err := validatePassword(r.Password); err != nil {
			return n, err
		}
	}
	return n, nil
}

// maxImportedCount bounds the counts an import brings (2^53-1, exact in every JSON
// reader): far beyond any real total, and far enough below the int64 limit that hop's
// own counts added to them never overflow, in hop or in an export read again.
const maxImportedCount = 1<<53 - 1

// validateImported checks the fields a link brings from elsewhere: title, created_at,
// imported_clicks and clicks_used. A link with its own creation date may already have expired at
// its source, so its expiry need only follow its creation.
func (s *Service) validateImported(r NewLink, n *newLink) error {
	if r.Title != nil && *r.Title != "" {
		if err := validateTitle(*r.Title); err != nil {
			return err
		}
		n.Title = r.Title
	}
	if r.CreatedAt != nil {
		if r.CreatedAt.After(s.now().Add(maxClockSkew)) {
			return problem.Invalid("created_at must not be in the future")
		}
		if r.ExpiresAt != nil && !r.ExpiresAt.After(*r.CreatedAt) {
			return problem.Invalid("expires_at must be after created_at")
		}
		n.CreatedAt = r.CreatedAt
	}
	if r.ImportedClicks != nil {
		switch {
		case *r.ImportedClicks < 0:
			return problem.Invalid("imported_clicks must not be negative")
		case *r.ImportedClicks > maxImportedCount:
			return problem.Invalid("imported_clicks must be at most %d", maxImportedCount)
		}
		n.ImportedClicks = *r.ImportedClicks
	}
	if r.ClicksUsed != nil && *r.ClicksUsed != 0 {
		switch {
		case *r.ClicksUsed < 0:
			return problem.Invalid("clicks_used must not be negative")
		case *r.ClicksUsed > maxImportedCount:
			return problem.Invalid("clicks_used must be at most %d", maxImportedCount)
		case r.MaxClicks == nil:
			// Without a limit hop counts a link's clicks itself.
			return problem.Invalid("clicks_used is taken only with max_clicks")
		}
		n.ClicksUsed = *r.ClicksUsed
	}
	return nil
}

// validatePatch checks p and turns it into what the store applies, hashing a new
// password; the checks run in the order PATCH has always reported them.
func (s *Service) validatePatch(p Patch) (linkPatch, error) {
	lp := linkPatch{URL: p.URL, ForwardQuery: p.ForwardQuery}
	if p.URL != nil {
		if err := validateURL(*p.URL); err != nil {
			return lp, err
		}
	}
	if p.RedirectStatus != nil {
		code := *p.RedirectStatus
		if code == 0 {
			code = http.StatusFound
		}
		if err := validateStatus(code); err != nil {
			return lp, err
		}
		lp.RedirectStatus = &code
	}
	if p.ExpiresAt != nil {
		if t := *p.ExpiresAt; t != nil {
			if err := validateExpiry(*t, s.now()); err != nil {
				return lp, err
			}
		}
		lp.ExpiresAt = p.ExpiresAt
	}
	if p.MaxClicks != nil {
		if n := *p.MaxClicks; n != nil {
			if err := validateMaxClicks(*n); err != nil {
				return lp, err
			}
		}
		lp.MaxClicks = p.MaxClicks
	}
	if p.URL != nil {
		if err := notOwnHost(*p.URL, s.ownHosts()); err != nil {
			return lp, err
		}
	}
	if p.Password != nil {
		hash := ""
		if *p.Password != "" {
			var err error
			if hash, err = hashPassword(*p.Password); err != nil {
				return lp, err
			}
		}
		lp.PasswordHash = &hash
	}
	if p.ExpiredURL != nil {
		u := *p.ExpiredURL
		if u != nil && *u == "" {
			u = nil
		}
		if u != nil {
			if err := validateExpiredURL(*u, s.ownHosts()); err != nil {
				return lp, err
			}
		}
		lp.ExpiredURL = &u
	}
	if p.Tags != nil {
		tags, err := normalizeTags(*p.Tags)
		if err != nil {
			return lp, err
		}
		lp.Tags = &tags
	}
	return lp, nil
}
