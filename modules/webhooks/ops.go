package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hop-dev/hop/internal/problem"
)

// NewWebhook is what a webhook is created with. Nil Links, Tags or Domain match every
// click. Links are slugs on Domain, or on the default domain when Domain is nil.
type NewWebhook struct {
	URL         string
	Links       []string
	Tags        []string
	Domain      *string
	IncludeBots bool
	// FormNonce is the dashboard form's one-time token: a second create with it makes
	// nothing (ErrFormSent). The API has none.
	FormNonce *uuid.UUID
}

// check validates n and normalises its domain, as the API and the dashboard both need.
func (n *NewWebhook) check() error {
	if n.URL == "" {
		return problem.With(ErrInvalid, "url is required")
	}
	if _, err := parseURL(n.URL); err != nil {
		return err
	}
	list := func(name string, l []string, max int) error {
		if l == nil {
			return nil
		}
		if len(l) == 0 || len(l) > max {
			return problem.With(ErrInvalid, "%s must be null or a list of 1 to %d items", name, max)
		}
		for _, v := range l {
			if v == "" || len(v) > 200 || strings.ContainsAny(v, "\x00\r\n") {
				return problem.With(ErrInvalid, "%s has an empty or malformed item", name)
			}
		}
		return nil
	}
	if err := list("links", n.Links, 1000); err != nil {
		return err
	}
	// A link's tags are stored trimmed: so are the ones a webhook follows, or a tag
	// sent with a space would never match.
	if n.Tags != nil {
		tags := make([]string, len(n.Tags))
		for i, t := range n.Tags {
			tags[i] = strings.TrimSpace(t)
		}
		n.Tags = tags
	}
	if err := list("tags", n.Tags, 100); err != nil {
		return err
	}
	if n.Domain != nil {
		d := strings.ToLower(strings.TrimSpace(*n.Domain))
		if d == "" || len(d) > 253 || strings.ContainsAny(d, "/:@ \x00") {
			return problem.With(ErrInvalid, "domain must be null or a host name")
		}
		n.Domain = &d
	}
	return nil
}

// resolve finds the links n follows, as ids (nil: every link), on its domain, and
// refuses a domain hop does not serve, whose filter would pass no click, silently.
func resolve(ctx context.Context, q querier, n NewWebhook) ([]int64, error) {
	if n.Links != nil {
		return linkIDs(ctx, q, n.Links, n.Domain)
	}
	if n.Domain != nil {
		return nil, domainExists(ctx, q, *n.Domain)
	}
	return nil, nil
}

// Create validates n, checks its URL against the SSRF guard and stores the webhook. The
// answer carries the signing secret, which is never shown again.
func (s *Service) Create(ctx context.Context, n NewWebhook) (Webhook, error) {
	// A form sent again is answered first: what it holds may no longer pass the checks
	// below (a slug deleted since), and it must not be "corrected" into a second webhook.
	if n.FormNonce != nil {
		if w, used, err := s.formSent(ctx, *n.FormNonce); used || err != nil {
			return w, err
		}
	}
	if err := n.check(); err != nil {
		return Webhook{}, err
	}
	if _, err := s.guard.check(ctx, n.URL); err != nil {
		return Webhook{}, err
	}
	w := Webhook{URL: n.URL, Domain: n.Domain, IncludeBots: n.IncludeBots, Tags: n.Tags}
	var err error
	if w.linkIDs, err = resolve(ctx, s.pool, n); err != nil {
		return Webhook{}, err
	}
	secret, sealed, err := s.newSealedSecret()
	if err != nil {
		return Webhook{}, err
	}
	w.sealed = sealed
	created, err := s.insert(ctx, w, n.Links, n.FormNonce)
	if err != nil {
		return created, err
	}
	created.Secret = secret
	s.Wake()
	return created, nil
}

// Change is a change to a webhook's settings; what it does not set stays as it is.
// Links, Tags and Domain take nil for "every one", as at creation, so each has a flag
// saying it is set.
type Change struct {
	URL         *string
	IncludeBots *bool
	SetLinks    bool
	Links       []string
	SetTags     bool
	Tags        []string
	SetDomain   bool
	Domain      *string
}

// Apply returns n with ch's changes made, unchecked.
func (ch Change) Apply(n NewWebhook) NewWebhook {
	if ch.URL != nil {
		n.URL = *ch.URL
	}
	if ch.IncludeBots != nil {
		n.IncludeBots = *ch.IncludeBots
	}
	if ch.SetLinks {
		n.Links = ch.Links
	}
	if ch.SetTags {
		n.Tags = ch.Tags
	}
	if ch.SetDomain {
		n.Domain = ch.Domain
	}
	return n
}

// Update applies ch to the webhook and returns it, checked as at creation: a new URL
// passes the SSRF guard, and links are slugs on the domain it ends up with. The cursor,
// the deliveries and a disabled state stay: a batch already made is sent as it was, to
// the URL of the moment (at once, with a new URL), and the new filters apply from the
// next batch made.
func (s *Service) Update(ctx context.Context, id int64, ch Change) (Webhook, error) {
	if ch.URL != nil {
		// Checked before the row is locked: the guard resolves the host.
		if *ch.URL == "" {
			return Webhook{}, problem.With(ErrInvalid, "url is required")
		}
		if _, err := s.guard.check(ctx, *ch.URL); err != nil {
			return Webhook{}, err
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Webhook{}, fmt.Errorf("update webhook: %w", err)
	}
	defer tx.Rollback(ctx)
	w, err := scanWebhook(tx.QueryRow(ctx, lockSQL, id))
	if err != nil {
		return Webhook{}, err
	}
	n := ch.Apply(NewWebhook{URL: w.URL, Links: w.Links, Tags: w.Tags, Domain: w.Domain, IncludeBots: w.IncludeBots})
	if err := n.check(); err != nil {
		return Webhook{}, err
	}
	// Unchanged links on an unchanged domain keep their ids, even of a link deleted
	// since, and an unchanged domain is not looked up again: changing the URL alone
	// must not fail over either.
	ids := w.linkIDs
	moved := !sameHost(n.Domain, w.Domain)
	switch {
	case n.Links == nil && !moved:
		ids = nil // every link, on a domain checked before
	case moved || w.Links == nil || !slices.Equal(n.Links, w.Links):
		if ids, err = resolve(ctx, tx, n); err != nil {
			return Webhook{}, err
		}
	}
	if n.URL != w.URL {
		// A receiver that failed is often fixed by pointing at a new URL: its waiting
		// batch goes now, not after the old one's backoff, and its failing time starts
		// again.
		if _, err := tx.Exec(ctx, newURLSQL, id, s.cfg.Now()); err != nil {
			return Webhook{}, fmt.Errorf("update webhook: %w", err)
		}
	}
	updated, err := scanWebhook(tx.QueryRow(ctx, updateSQL, id, n.URL, ids, n.Links, n.Tags, n.Domain, n.IncludeBots))
	if err != nil {
		return Webhook{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Webhook{}, fmt.Errorf("update webhook: %w", err)
	}
	s.Wake()
	return updated, nil
}

// RotateSecret gives the webhook a new signing secret and returns the webhook with it,
// shown this once. Every request from now on is signed with it, retries of earlier
// batches included; one already on its way carries the old signature, and if the
// receiver refuses it, it is retried like any failure.
func (s *Service) RotateSecret(ctx context.Context, id int64) (Webhook, error) {
	secret, sealed, err := s.newSealedSecret()
	if err != nil {
		return Webhook{}, err
	}
	w, err := scanWebhook(s.pool.QueryRow(ctx, rotateSQL, id, sealed))
	if err != nil {
		return Webhook{}, err
	}
	w.Secret = secret
	return w, nil
}

// List returns every webhook, disabled ones included, oldest first.
func (s *Service) List(ctx context.Context) ([]Webhook, error) { return s.list(ctx, false) }

// Get returns one webhook, or ErrNotFound.
func (s *Service) Get(ctx context.Context, id int64) (Webhook, error) { return s.get(ctx, id) }

// Delete removes a webhook and its deliveries, or answers ErrNotFound.
func (s *Service) Delete(ctx context.Context, id int64) error { return s.delete(ctx, id) }

// Deliveries returns a webhook's most recent deliveries, newest first (ErrNotFound
// for an unknown webhook).
func (s *Service) Deliveries(ctx context.Context, id int64, limit int) ([]Delivery, error) {
	return s.deliveries(ctx, id, limit)
}

// Ping sends a ping event to the webhook now and returns the delivery as recorded,
// delivered or failed.
func (s *Service) Ping(ctx context.Context, id int64) (Delivery, error) {
	w, err := s.get(ctx, id)
	if err != nil {
		return Delivery{}, err
	}
	eid, err := uuid.NewV7()
	if err != nil {
		return Delivery{}, fmt.Errorf("make ping id: %w", err)
	}
	body, err := json.Marshal(Payload{Events: []Event{{Type: "ping", ID: eid, ClickedAt: s.cfg.Now().UTC().Truncate(time.Millisecond)}}})
	if err != nil {
		return Delivery{}, fmt.Errorf("encode ping: %w", err)
	}
	d, err := s.insertDelivery(ctx, w.ID, "ping", body, 1, nil)
	if err != nil {
		return Delivery{}, err
	}
	return s.sendNow(ctx, w, d)
}

// Retry sends one of a webhook's deliveries again now (a failed batch, typically) and
// returns it as recorded.
func (s *Service) Retry(ctx context.Context, id, delivery int64) (Delivery, error) {
	w, err := s.get(ctx, id)
	if err != nil {
		return Delivery{}, err
	}
	d, err := s.delivery(ctx, id, delivery)
	if err != nil {
		return Delivery{}, err
	}
	return s.sendNow(ctx, w, d)
}

// sendNow makes one manual attempt at d and reads it back. The attempt is bounded by
// Timeout and finishes, and is recorded, even if the caller stops waiting (an API
// client that hangs up): else a ping would stay pending for ever, with nobody to send it.
func (s *Service) sendNow(ctx context.Context, w Webhook, d Delivery) (Delivery, error) {
	ctx = context.WithoutCancel(ctx)
	if _, err := s.attempt(ctx, w, d, true); err != nil {
		return Delivery{}, err
	}
	d, err := s.delivery(ctx, w.ID, d.ID)
	if errors.Is(err, ErrNoDelivery) {
		return Delivery{}, ErrNotFound // the webhook was deleted meanwhile
	}
	if err != nil {
		return Delivery{}, err
	}
	s.Wake()
	return d, nil
}
