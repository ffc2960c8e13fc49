// Package links owns short links: their model and validation, slug generation, the
// PostgreSQL store and the /links management API. The redirect module reads links
// through a one-method interface of its own; links tells it when a cached link changes.
package links

import (
	"net/http"
	"time"

	"github.com/hop-dev/hop/internal/problem"
)

// Link is a short link as stored and as returned by the API.
type Link struct {
	ID             int64      `json:"id"`
	Slug           string     `json:"slug"`
	ShortURL       string     `json:"short_url"`
	OriginalURL    string     `json:"original_url"`
	RedirectStatus int        `json:"redirect_status"`
	ExpiresAt      *time.Time `json:"expires_at"`
	MaxClicks      *int64     `json:"max_clicks"`
	HasPassword    bool       `json:"has_password"`
	Tags           []string   `json:"tags"`
	TotalClicks    int64      `json:"total_clicks"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`

	PasswordHash string     `json:"-"`
	DeletedAt    *time.Time `json:"-"`
}

// Errors returned by the store and handlers; each renders as its problem response.
var (
	ErrNotFound  = problem.New(http.StatusNotFound, "link-not-found", "no link has this slug")
	ErrGone      = problem.New(http.StatusGone, "link-gone", "this link was deleted")
	ErrSlugTaken = problem.New(http.StatusConflict, "slug-taken", "this slug is taken (slugs of deleted links are never reused)")
)
