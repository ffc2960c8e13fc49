// Package links owns short links: their model and validation, slug generation, the
// PostgreSQL store, and the Service that the /links management API and the dashboard
// both call. The redirect module reads links through a one-method interface of its
// own; links tells it when a cached link changes.
package links

import (
	"errors"
	"time"
)

// Link is a short link as stored and as returned by the API.
type Link struct {
	ID             int64      `json:"id"`
	Slug           string     `json:"slug"`
	Domain         string     `json:"domain"` // the host of the link's short domain
	ShortURL       string     `json:"short_url"`
	OriginalURL    string     `json:"original_url"`
	RedirectStatus int        `json:"redirect_status"`
	ExpiresAt      *time.Time `json:"expires_at"`
	MaxClicks      *int64     `json:"max_clicks"`
	Status         string     `json:"status"`      // StatusActive, StatusExpired or StatusLimitReached, at read time
	ClicksUsed     int64      `json:"clicks_used"` // what max_clicks counts; see apiColumns
	ForwardQuery   bool       `json:"forward_query"`
	ExpiredURL     *string    `json:"expired_url"` // where an expired or used-up link goes instead of 410
	HasPassword    bool       `json:"has_password"`
	Tags           []string   `json:"tags"`
	TotalClicks    int64      `json:"total_clicks"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	Title          *string    `json:"title"`
	ImportedClicks int64      `json:"imported_clicks"` // counted by the shortener it came from; never in total_clicks

	PasswordHash string     `json:"-"`
	DomainID     int64      `json:"-"`
	DeletedAt    *time.Time `json:"-"`
}

// A link's status as the API reports and filters it. Deleted links are not listed.
const (
	StatusActive       = "active"
	StatusExpired      = "expired"       // past expires_at (takes precedence over the limit)
	StatusLimitReached = "limit_reached" // clicks_used has reached max_clicks
)

// statusAt is l's status at now.
func statusAt(l Link, now time.Time) string {
	switch {
	case l.ExpiresAt != nil && !now.Before(*l.ExpiresAt):
		return StatusExpired
	case l.MaxClicks != nil && l.ClicksUsed >= *l.MaxClicks:
		return StatusLimitReached
	}
	return StatusActive
}

// Errors returned by the store and handlers; app's error table says how each is answered.
var (
	ErrNotFound  = errors.New("link not found")
	ErrGone      = errors.New("link deleted")
	ErrSlugTaken = errors.New("slug taken")
	// ErrOutOfTime answers the bulk items left when the bulk budget has run out.
	ErrOutOfTime = errors.New("bulk request out of time")
)
