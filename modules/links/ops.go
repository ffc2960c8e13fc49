package links

import (
	"context"
	"net/http"
	"time"

	"github.com/hop-dev/hop/internal/problem"
)

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

// Create validates n and stores the link, as POST /links does. Validation failures and
// taken slugs are *problem.Error values.
func (h *Handler) Create(ctx context.Context, n NewLink) (Link, error) {
	v, err := h.validateCreate(n)
	if err != nil {
		return Link{}, err
	}
	if v.DomainID, err = h.createDomain(ctx, n.Domain); err != nil {
		return Link{}, err
	}
	if n.Password != "" {
		if v.PasswordHash, err = hashPassword(n.Password); err != nil {
			return Link{}, err
		}
	}
	return h.insert(ctx, v)
}

// Update validates p and applies it to the live link with this slug on the default
// domain, as PATCH /links/{slug} does; every redirect cache drops the link at once.
func (h *Handler) Update(ctx context.Context, slug string, p Patch) (Link, error) {
	return h.UpdateIn(ctx, "", slug, p)
}

// UpdateIn is Update on the domain with host ("" is the default domain).
func (h *Handler) UpdateIn(ctx context.Context, host, slug string, p Patch) (Link, error) {
	d, err := h.domainID(ctx, host)
	if err != nil {
		return Link{}, err
	}
	lp, err := h.validatePatch(p)
	if err != nil {
		return Link{}, err
	}
	l, err := h.store.update(ctx, d, slug, lp)
	if err != nil {
		return Link{}, err
	}
	h.invalidate(ctx, l.DomainID, l.Slug)
	return h.present(ctx, l), nil
}

// Delete soft-deletes the live link with this slug on the default domain, as DELETE
// /links/{slug} does: the slug answers 410 from then on and is never reused.
func (h *Handler) Delete(ctx context.Context, slug string) error {
	return h.DeleteIn(ctx, "", slug)
}

// DeleteIn is Delete on the domain with host ("" is the default domain).
func (h *Handler) DeleteIn(ctx context.Context, host, slug string) error {
	d, err := h.domainID(ctx, host)
	if err != nil {
		return err
	}
	if err := h.store.delete(ctx, d, slug); err != nil {
		return err
	}
	h.invalidate(ctx, d, slug)
	return nil
}

// validateCreate checks a create request; the password is checked but left to the
// caller to hash.
func (h *Handler) validateCreate(r NewLink) (newLink, error) {
	n := newLink{URL: r.URL, Slug: r.Slug, ExpiresAt: r.ExpiresAt, MaxClicks: r.MaxClicks, RedirectStatus: r.RedirectStatus, ForwardQuery: true}
	if err := validateURL(r.URL); err != nil {
		return n, err
	}
	if err := notOwnHost(r.URL, h.ownHosts()); err != nil {
		return n, err
	}
	if r.ForwardQuery != nil {
		n.ForwardQuery = *r.ForwardQuery
	}
	if r.ExpiredURL != nil && *r.ExpiredURL != "" {
		if err := validateExpiredURL(*r.ExpiredURL); err != nil {
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
	if err := h.validateImported(r, &n); err != nil {
		return n, err
	}
	if r.ExpiresAt != nil && r.CreatedAt == nil {
		if err := validateExpiry(*r.ExpiresAt, h.now()); err != nil {
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

// validateImported checks the fields a link brings from elsewhere: title, created_at
// and imported_clicks. A link with its own creation date may already have expired at
// its source, so its expiry need only follow its creation.
func (h *Handler) validateImported(r NewLink, n *newLink) error {
	if r.Title != nil && *r.Title != "" {
		if err := validateTitle(*r.Title); err != nil {
			return err
		}
		n.Title = r.Title
	}
	if r.CreatedAt != nil {
		if r.CreatedAt.After(h.now().Add(maxClockSkew)) {
			return problem.Invalid("created_at must not be in the future")
		}
		if r.ExpiresAt != nil && !r.ExpiresAt.After(*r.CreatedAt) {
			return problem.Invalid("expires_at must be after created_at")
		}
		n.CreatedAt = r.CreatedAt
	}
	if r.ImportedClicks != nil {
		if *r.ImportedClicks < 0 {
			return problem.Invalid("imported_clicks must not be negative")
		}
		n.ImportedClicks = *r.ImportedClicks
	}
	return nil
}

// validatePatch checks p and turns it into what the store applies, hashing a new
// password; the checks run in the order PATCH has always reported them.
func (h *Handler) validatePatch(p Patch) (linkPatch, error) {
	lp := linkPatch{URL: p.URL, ForwardQuery: p.ForwardQuery}
	if p.URL != nil {
		if err := validateURL(*p.URL); err != nil {
			return lp, err
		}
	}
	if p.RedirectStatus != nil {
		s := *p.RedirectStatus
		if s == 0 {
			s = http.StatusFound
		}
		if err := validateStatus(s); err != nil {
			return lp, err
		}
		lp.RedirectStatus = &s
	}
	if p.ExpiresAt != nil {
		if t := *p.ExpiresAt; t != nil {
			if err := validateExpiry(*t, h.now()); err != nil {
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
		if err := notOwnHost(*p.URL, h.ownHosts()); err != nil {
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
			if err := validateExpiredURL(*u); err != nil {
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
