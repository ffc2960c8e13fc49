package webhooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hop-dev/hop/internal/horizon"
	"github.com/hop-dev/hop/internal/problem"
)

// Webhook is a subscription as the API shows it.
type Webhook struct {
	ID           int64      `json:"id"`
	URL          string     `json:"url"`
	Secret       string     `json:"secret,omitempty"` // only in the answers to create and to a new secret
	Links        []string   `json:"links"`
	Tags         []string   `json:"tags"`
	Domain       *string    `json:"domain"`
	IncludeBots  bool       `json:"include_bots"`
	Disabled     bool       `json:"disabled"`
	DisabledAt   *time.Time `json:"disabled_at"`
	FailingSince *time.Time `json:"failing_since"`
	CreatedAt    time.Time  `json:"created_at"`

	linkIDs []int64
	sealed  string
	cursor  horizon.Position
}

// filters is what decides which clicks a webhook gets.
type filters struct {
	linkIDs []int64
	tags    []string
	domain  *string
	bots    bool
}

func (w Webhook) filters() filters {
	return filters{linkIDs: w.linkIDs, tags: w.Tags, domain: w.Domain, bots: w.IncludeBots}
}

// equal tells whether f and g pass the same clicks. nil (every one) differs from any
// list.
func (f filters) equal(g filters) bool {
	return (f.linkIDs == nil) == (g.linkIDs == nil) && slices.Equal(f.linkIDs, g.linkIDs) &&
		(f.tags == nil) == (g.tags == nil) && slices.Equal(f.tags, g.tags) &&
		sameHost(f.domain, g.domain) && f.bots == g.bots
}

func sameHost(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// Delivery is one batch (or ping) sent to a webhook.
type Delivery struct {
	ID            int64      `json:"id"`
	Kind          string     `json:"kind"`
	Status        string     `json:"status"`
	Events        int        `json:"events"`
	Attempts      int        `json:"attempts"`
	HTTPStatus    *int       `json:"http_status"`
	LatencyMS     *float64   `json:"latency_ms"`
	Error         string     `json:"error"`
	CreatedAt     time.Time  `json:"created_at"`
	LastAttemptAt *time.Time `json:"last_attempt_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	DeliveredAt   *time.Time `json:"delivered_at"`

	webhookID int64
	body      []byte
	to        *horizon.Position
}

const webhookColumns = `id, url, secret, link_ids, COALESCE(link_slugs, '{}'), tags, domain, include_bots,
       disabled_at, failing_since, created_at, cursor_xid::text, cursor_event`

// SecretTag names the webhook's current secret without revealing it (a hash of the
// sealed form, which is encrypted): it changes with every new secret, so a form can say
// which secret it meant to replace.
func (w Webhook) SecretTag() string {
	sum := sha256.Sum256([]byte(w.sealed))
	return hex.EncodeToString(sum[:8])
}

func scanWebhook(row pgx.Row) (Webhook, error) {
	var (
		w     Webhook
		slugs []string
		xid   string
	)
	err := row.Scan(&w.ID, &w.URL, &w.sealed, &w.linkIDs, &slugs, &w.Tags, &w.Domain, &w.IncludeBots,
		&w.DisabledAt, &w.FailingSince, &w.CreatedAt, &xid, &w.cursor.Event)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, ErrNotFound
	}
	if err != nil {
		return w, fmt.Errorf("scan webhook: %w", err)
	}
	if w.linkIDs != nil {
		w.Links = slugs
	}
	w.Disabled = w.DisabledAt != nil
	if w.cursor.XID, err = horizon.ParseXID(xid); err != nil {
		return w, err
	}
	return w, nil
}

// insertSQL starts a webhook's cursor at the oldest transaction still running in the
// cluster: it receives the clicks committed from about now on.
const insertSQL = `
INSERT INTO webhooks (url, secret, link_ids, link_slugs, tags, domain, include_bots, cursor_xid, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, pg_snapshot_xmin(pg_current_snapshot()), $8)
RETURNING ` + webhookColumns

// useNonceSQL records a form nonce with the webhook it made, unless it is used already,
// and forgets nonces no form is likely to be sent with again.
const useNonceSQL = `
WITH forgotten AS (DELETE FROM webhook_form_nonces WHERE used_at < $3::timestamptz - interval '30 days')
INSERT INTO webhook_form_nonces (nonce, webhook_id, used_at) VALUES ($1, $2, $3)
ON CONFLICT (nonce) DO NOTHING`

const nonceSQL = `SELECT webhook_id FROM webhook_form_nonces WHERE nonce = $1`

// errNonceUsed rolls back a create whose form nonce another create recorded first.
var errNonceUsed = errors.New("form nonce used")

// insert stores w, and with it nonce when there is one. A nonce already used makes
// nothing: ErrFormSent, with the webhook it made (see formSent).
func (s *Service) insert(ctx context.Context, w Webhook, slugs []string, nonce *uuid.UUID) (Webhook, error) {
	store := func(q querier) (Webhook, error) {
		return scanWebhook(q.QueryRow(ctx, insertSQL, w.URL, w.sealed, w.linkIDs, slugs, w.Tags, w.Domain, w.IncludeBots, s.cfg.Now()))
	}
	if nonce == nil {
		return store(s.pool)
	}
	var created Webhook
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if created, err = store(tx); err != nil {
			return err
		}
		// A create sent at the same time with the same nonce waits here for this one.
		tag, err := tx.Exec(ctx, useNonceSQL, nonce, created.ID, s.cfg.Now())
		if err != nil {
			return fmt.Errorf("record form nonce: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return errNonceUsed
		}
		return nil
	})
	if errors.Is(err, errNonceUsed) {
		earlier, used, err := s.formSent(ctx, *nonce)
		if err == nil && !used {
			err = errors.New("form nonce used, then forgotten")
		}
		return earlier, err
	}
	return created, err
}

// formSent reports whether a form with nonce has made a webhook already; if so, the
// error is ErrFormSent and the webhook is the one it made (its Secret empty), or the
// zero Webhook once that was deleted.
func (s *Service) formSent(ctx context.Context, nonce uuid.UUID) (Webhook, bool, error) {
	var id *int64
	switch err := s.pool.QueryRow(ctx, nonceSQL, nonce).Scan(&id); {
	case errors.Is(err, pgx.ErrNoRows):
		return Webhook{}, false, nil
	case err != nil:
		return Webhook{}, false, fmt.Errorf("look up form nonce: %w", err)
	case id == nil:
		return Webhook{}, true, ErrFormSent
	}
	w, err := s.Get(ctx, *id)
	if errors.Is(err, ErrNotFound) { // deleted meanwhile
		return Webhook{}, true, ErrFormSent
	}
	if err != nil {
		return Webhook{}, true, err
	}
	return w, true, ErrFormSent
}

// linkIDsSQL finds links by slug on one domain: the webhook's ($2, a host), else the
// default one. A slug names one link per domain, so without the domain it is ambiguous.
// The domain's id is found first and links probed by their (domain_id, slug) key.
// Deleted links are dropped only past the OFFSET 0 fence: given deleted_at IS NULL,
// PostgreSQL without statistics (guessing few links live) read every live link of the
// domain through links_live_domain_id_idx or links_live_id_idx instead.
const linkIDsSQL = `
SELECT id, slug FROM (
    SELECT id, slug, deleted_at FROM links
    WHERE domain_id = (SELECT id FROM domains WHERE CASE WHEN $2::text IS NULL THEN is_default ELSE host = $2 END)
      AND slug = ANY($1)
    OFFSET 0) l
WHERE deleted_at IS NULL`

// linkIDs resolves slugs on domain (nil: the default one) to link ids; every slug
// must exist there.
func linkIDs(ctx context.Context, q querier, slugs []string, domain *string) ([]int64, error) {
	rows, err := q.Query(ctx, linkIDsSQL, slugs, domain)
	if err != nil {
		return nil, fmt.Errorf("find links: %w", err)
	}
	found := map[string]int64{}
	for rows.Next() {
		var (
			id   int64
			slug string
		)
		if err := rows.Scan(&id, &slug); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan link: %w", err)
		}
		found[slug] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find links: %w", err)
	}
	ids := make([]int64, 0, len(slugs))
	for _, slug := range slugs {
		id, ok := found[slug]
		if !ok {
			if domain != nil {
				return nil, problem.With(ErrInvalid, "links: no link %q on %s", slug, *domain)
			}
			return nil, problem.With(ErrInvalid, "links: no link %q", slug)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

const domainExistsSQL = `SELECT EXISTS (SELECT 1 FROM domains WHERE host = $1 AND deleted_at IS NULL)`

// domainExists answers ErrInvalid unless host is a domain hop serves.
func domainExists(ctx context.Context, q querier, host string) error {
	var ok bool
	if err := q.QueryRow(ctx, domainExistsSQL, host).Scan(&ok); err != nil {
		return fmt.Errorf("find domain: %w", err)
	}
	if !ok {
		return problem.With(ErrInvalid, "domain: no domain %q", host)
	}
	return nil
}

const getSQL = `SELECT ` + webhookColumns + ` FROM webhooks WHERE id = $1`

func (s *Service) get(ctx context.Context, id int64) (Webhook, error) {
	return scanWebhook(s.pool.QueryRow(ctx, getSQL, id))
}

const listSQL = `SELECT ` + webhookColumns + ` FROM webhooks ORDER BY id`

func (s *Service) list(ctx context.Context, activeOnly bool) ([]Webhook, error) {
	rows, err := s.pool.Query(ctx, listSQL)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	defer rows.Close()
	out := []Webhook{}
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		if !activeOnly || !w.Disabled {
			out = append(out, w)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	return out, nil
}

// querier is a pool or a transaction: Update looks links up in the transaction that
// holds the webhook's row, not on a second connection while holding one.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// newURLSQL makes a webhook's waiting batch due now and its failing time start again:
// the receiver has a new URL (see Update).
const newURLSQL = `
WITH due AS (
    UPDATE webhook_deliveries SET next_attempt_at = $2
    WHERE webhook_id = $1 AND status = 'pending' AND kind = 'events' AND next_attempt_at > $2)
UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL`

// updateSQL writes a webhook's settings; Update checks them first.
const updateSQL = `
UPDATE webhooks SET url = $2, link_ids = $3, link_slugs = $4, tags = $5, domain = $6, include_bots = $7
WHERE id = $1
RETURNING ` + webhookColumns

// lockSQL reads a webhook for Update, which then writes every setting: a change made
// meanwhile by another request waits rather than being overwritten with what was read.
const lockSQL = `SELECT ` + webhookColumns + ` FROM webhooks WHERE id = $1 FOR UPDATE`

// rotateSQL replaces the sealed secret in one statement: a concurrent send reads the
// old or the new one, never a mix.
const rotateSQL = `UPDATE webhooks SET secret = $2 WHERE id = $1 RETURNING ` + webhookColumns

const deleteSQL = `DELETE FROM webhooks WHERE id = $1`

func (s *Service) delete(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, deleteSQL, id)
	if err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

const deliveryColumns = `id, webhook_id, kind, status, events, attempts, http_status, latency_ms, error,
       created_at, last_attempt_at, CASE WHEN status = 'pending' THEN next_attempt_at END, delivered_at,
       body, to_xid::text, to_event`

func scanDelivery(row pgx.Row) (Delivery, error) {
	var (
		d     Delivery
		xid   *string
		event *uuid.UUID
	)
	err := row.Scan(&d.ID, &d.webhookID, &d.Kind, &d.Status, &d.Events, &d.Attempts, &d.HTTPStatus, &d.LatencyMS, &d.Error,
		&d.CreatedAt, &d.LastAttemptAt, &d.NextAttemptAt, &d.DeliveredAt, &d.body, &xid, &event)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, ErrNoDelivery
	}
	if err != nil {
		return d, fmt.Errorf("scan delivery: %w", err)
	}
	if xid != nil && event != nil {
		x, err := horizon.ParseXID(*xid)
		if err != nil {
			return d, err
		}
		d.to = &horizon.Position{XID: x, Event: *event}
	}
	return d, nil
}

// deliveriesSQL lists a webhook's latest deliveries through webhook_deliveries_recent_idx.
// webhook_id is a range, not an equality, so that the ORDER BY keeps webhook_id and
// follows that index: against an equality PostgreSQL drops it as constant, and with
// statistics showing few webhooks the generic plan walked the primary key from the
// newest delivery through every other webhook's until it had found this one's.
const deliveriesSQL = `SELECT ` + deliveryColumns + ` FROM webhook_deliveries
WHERE webhook_id >= $1 AND webhook_id <= $1 ORDER BY webhook_id, id DESC LIMIT $2`

func (s *Service) deliveries(ctx context.Context, id int64, limit int) ([]Delivery, error) {
	if _, err := s.get(ctx, id); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, deliveriesSQL, id, limit)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

const deliverySQL = `SELECT ` + deliveryColumns + ` FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2`

func (s *Service) delivery(ctx context.Context, webhookID, id int64) (Delivery, error) {
	return scanDelivery(s.pool.QueryRow(ctx, deliverySQL, webhookID, id))
}

const headSQL = `SELECT ` + deliveryColumns + ` FROM webhook_deliveries
WHERE webhook_id = $1 AND status = 'pending' AND kind = 'events'`

// head returns the webhook's pending batch, or ErrNoDelivery.
func (s *Service) head(ctx context.Context, webhookID int64) (Delivery, error) {
	return scanDelivery(s.pool.QueryRow(ctx, headSQL, webhookID))
}

// insertDeliverySQL records a batch before it is sent: if hop dies mid-send, the
// batch is still the head and is sent again. A concurrent insert (a second instance
// that briefly believed it owned the webhook) yields to the first.
const insertDeliverySQL = `
INSERT INTO webhook_deliveries (webhook_id, kind, status, body, events, to_xid, to_event, created_at, next_attempt_at)
VALUES ($1, $2, 'pending', $3, $4, $5::text::xid8, $6, $7, $7)
ON CONFLICT (webhook_id) WHERE status = 'pending' AND kind = 'events' DO NOTHING
RETURNING ` + deliveryColumns

func (s *Service) insertDelivery(ctx context.Context, webhookID int64, kind string, body []byte, events int, to *horizon.Position) (Delivery, error) {
	var xid *string
	var event *uuid.UUID
	if to != nil {
		x := horizon.FormatXID(to.XID)
		xid, event = &x, &to.Event
	}
	d, err := scanDelivery(s.pool.QueryRow(ctx, insertDeliverySQL, webhookID, kind, body, events, xid, event, s.cfg.Now()))
	if errors.Is(err, ErrNoDelivery) {
		return s.head(ctx, webhookID)
	}
	return d, err
}

// MaxListed is the most deliveries GET /webhooks/{id}/deliveries returns, and how many
// of a webhook's latest deliveries are always kept.
const MaxListed = 100

// pruneSQL deletes up to $3 of the webhook's deliveries older than its $2 latest,
// oldest first: delivered ones and failed pings. Pending ones and failed batches stay:
// a failed batch holds clicks the receiver has not had and stays re-sendable. A
// delivered batch's body is of no further use, and at one batch a second per busy
// webhook the table would otherwise grow without end.
//
// It reads only the rows it deletes, through webhook_deliveries_prunable_idx, whose
// predicate the status test repeats word for word (PostgreSQL uses a partial index only
// where it can prove the query implies its predicate). webhook_id is a range, not an
// equality, so that the ORDER BYs keep webhook_id: against an equality PostgreSQL drops
// it as constant, and with statistics showing few webhooks it then walked the primary
// key, every webhook's rows, in id order. The ids chosen are deleted by the primary key
// (= ANY of an array), not by a join PostgreSQL may run as a scan of the whole table.
const pruneSQL = `
DELETE FROM webhook_deliveries WHERE id = ANY (ARRAY(
    SELECT id FROM webhook_deliveries
    WHERE webhook_id >= $1 AND webhook_id <= $1
      AND id < (SELECT id FROM webhook_deliveries WHERE webhook_id >= $1 AND webhook_id <= $1
                ORDER BY webhook_id, id DESC OFFSET $2 - 1 LIMIT 1)
      AND (status = 'delivered' OR (status = 'failed' AND kind = 'ping'))
    ORDER BY webhook_id, id
    LIMIT $3))`

// prune deletes the webhook's old deliveries (see pruneSQL), batch rows per statement
// so no statement holds locks for long, and reports how many.
func (s *Service) prune(ctx context.Context, webhookID int64, batch int) (int64, error) {
	var n int64
	for {
		tag, err := s.pool.Exec(ctx, pruneSQL, webhookID, MaxListed, batch)
		if err != nil {
			return n, fmt.Errorf("prune deliveries: %w", err)
		}
		n += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return n, nil
		}
	}
}

// advanceSQL moves a webhook's cursor forward only, so a late or repeated answer
// never moves it back.
const advanceSQL = `
UPDATE webhooks SET cursor_xid = $2::text::xid8, cursor_event = $3
WHERE id = $1 AND (cursor_xid, cursor_event) < ($2::text::xid8, $3::uuid)`

func advance(ctx context.Context, tx pgx.Tx, id int64, to horizon.Position) error {
	if _, err := tx.Exec(ctx, advanceSQL, id, horizon.FormatXID(to.XID), to.Event); err != nil {
		return fmt.Errorf("advance webhook cursor: %w", err)
	}
	return nil
}
