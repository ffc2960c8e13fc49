// Package domains owns hop's short domains: the default one (the host of HOP_BASE_URL)
// and the branded ones added through /domains or `hop domain`. Each has its own slugs
// and fallback redirects. On the click path the redirect asks a Registry, an in-memory
// map refreshed on change, which domain a request's Host names: no database round trip.
package domains

import (
	"encoding/json"
	"errors"
	"time"
)

// DefaultID is the id of the default domain; links created before domains existed,
// or without one, belong to it.
const DefaultID int64 = 1

// Domain is a short domain as stored and as the API shows it. Empty fallbacks mean
// hop's own page.
type Domain struct {
	ID               int64
	Host             string
	BaseURL          string
	RootRedirect     string
	NotFoundRedirect string
	ExpiredRedirect  string
	Default          bool
	Links            int64 // live links; filled by List only
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// MarshalJSON shows unset fallbacks as null, as they are sent.
func (d Domain) MarshalJSON() ([]byte, error) {
	null := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return json.Marshal(struct {
		Host             string    `json:"host"`
		BaseURL          string    `json:"base_url"`
		RootRedirect     *string   `json:"root_redirect"`
		NotFoundRedirect *string   `json:"not_found_redirect"`
		ExpiredRedirect  *string   `json:"expired_redirect"`
		Default          bool      `json:"default"`
		Links            int64     `json:"links"`
		CreatedAt        time.Time `json:"created_at"`
		UpdatedAt        time.Time `json:"updated_at"`
	}{d.Host, d.BaseURL, null(d.RootRedirect), null(d.NotFoundRedirect), null(d.ExpiredRedirect),
		d.Default, d.Links, d.CreatedAt, d.UpdatedAt})
}

// Errors returned by the store, the registry and the handlers; app's error table says
// how each is answered.
var (
	ErrNotFound      = errors.New("domain not found")
	ErrHostTaken     = errors.New("domain host taken")
	ErrHasLinks      = errors.New("domain has links")
	ErrDefaultDomain = errors.New("default domain is configured")
)
