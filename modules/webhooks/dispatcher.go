package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hop-dev/hop/internal/horizon"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Wake asks the loop to look for work now (new clicks were committed).
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wakeIn wakes the loop after d, when that is sooner than its next poll.
func (s *Service) wakeIn(d time.Duration) {
	if d < s.cfg.Poll {
		time.AfterFunc(d, s.Wake)
	}
}

// lockBase is the high half of the advisory lock key of a webhook ("hw"): the instance
// holding it on its session is the one delivering that webhook.
const lockBase = int64(0x6877) << 48

const (
	tryLockSQL = `SELECT pg_try_advisory_lock($1)`
	unlockSQL  = `SELECT pg_advisory_unlock($1)`
)

// Run delivers until ctx ends. One session holds an advisory lock per webhook this
// instance delivers; if the instance dies, PostgreSQL drops the session and its locks,
// and another instance takes the webhooks over from their committed cursors.
func (s *Service) Run(ctx context.Context) error {
	poll := time.NewTicker(s.cfg.Poll)
	defer poll.Stop()
	var (
		conn   *pgxpool.Conn
		owned  = map[int64]bool{}
		pruned = map[int64]time.Time{} // when each owned webhook's deliveries were last pruned
	)
	drop := func() {
		if conn != nil {
			// Closing the session releases every lock it holds at once.
			conn.Conn().Close(context.Background()) //nolint:errcheck // the pool discards it
			conn.Release()
			conn = nil
		}
		clear(owned)
	}
	defer func() {
		s.wg.Wait()
		drop()
	}()
	for {
		if err := s.runOnce(ctx, &conn, owned); err != nil && ctx.Err() == nil {
			s.logger.Warn("looking for webhook work failed", "error", err)
			s.wg.Wait()
			drop()
		}
		s.pruneOwned(ctx, owned, pruned)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-poll.C:
		}
	}
}

// pruneEvery is how often the deliveries of a webhook this instance delivers are
// pruned, and pruneBatch the most rows one statement deletes.
const (
	pruneEvery = time.Minute
	pruneBatch = 5000
)

// pruneOwned prunes the deliveries of the webhooks this instance owns, each at most
// once per pruneEvery. A failure is logged and tried again at the next turn.
func (s *Service) pruneOwned(ctx context.Context, owned map[int64]bool, pruned map[int64]time.Time) {
	now := s.cfg.Now()
	for id := range pruned {
		if !owned[id] {
			delete(pruned, id)
		}
	}
	for id, mine := range owned {
		if last, ok := pruned[id]; !mine || ctx.Err() != nil || (ok && now.Sub(last) < pruneEvery) {
			continue
		}
		if _, err := s.prune(ctx, id, pruneBatch); err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("pruning webhook deliveries failed", "webhook", id, "error", err)
			}
			continue
		}
		pruned[id] = now
	}
}

// runOnce takes the lock of every active webhook it can and starts a worker for each
// it owns that has none running.
func (s *Service) runOnce(ctx context.Context, conn **pgxpool.Conn, owned map[int64]bool) error {
	hooks, err := s.list(ctx, true)
	if err != nil {
		return err
	}
	if *conn == nil {
		if *conn, err = s.pool.Acquire(ctx); err != nil {
			return fmt.Errorf("acquire lock session: %w", err)
		}
	}
	active := map[int64]bool{}
	for _, w := range hooks {
		active[w.ID] = true
		if owned[w.ID] {
			continue
		}
		var ok bool
		if err := (*conn).QueryRow(ctx, tryLockSQL, lockBase|w.ID).Scan(&ok); err != nil {
			return fmt.Errorf("lock webhook: %w", err)
		}
		owned[w.ID] = ok
	}
	for id, mine := range owned {
		if active[id] {
			continue
		}
		s.mu.Lock()
		running := s.busy[id]
		s.mu.Unlock()
		if running {
			continue // let its worker finish before giving the webhook up
		}
		s.mu.Lock()
		delete(s.ahead, id)
		s.mu.Unlock()
		if mine {
			if _, err := (*conn).Exec(ctx, unlockSQL, lockBase|id); err != nil {
				return fmt.Errorf("unlock webhook: %w", err)
			}
		}
		delete(owned, id)
	}
	for id, mine := range owned {
		if !mine || !active[id] {
			continue
		}
		s.mu.Lock()
		if s.busy[id] {
			s.mu.Unlock()
			continue
		}
		s.busy[id] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.busy, id)
				s.mu.Unlock()
			}()
			s.work(ctx, id)
		})
	}
	return nil
}

// work sends the webhook's batches while there are due ones.
func (s *Service) work(ctx context.Context, id int64) {
	for ctx.Err() == nil {
		more, err := s.step(ctx, id)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrNotFound) {
				s.logger.Warn("webhook delivery step failed", "webhook", id, "error", err)
			}
			return
		}
		if !more {
			return
		}
	}
}

// step sends the webhook's head batch if it is due, making one from new clicks when
// there is none. It reports whether more work may be due right away.
func (s *Service) step(ctx context.Context, id int64) (bool, error) {
	w, err := s.get(ctx, id)
	if err != nil || w.Disabled {
		return false, err
	}
	d, err := s.head(ctx, id)
	if errors.Is(err, ErrNoDelivery) {
		d, err = s.nextBatch(ctx, w)
		if errors.Is(err, ErrNoDelivery) {
			return false, nil
		}
		if errors.Is(err, errSkipped) {
			return true, nil
		}
	}
	if err != nil {
		return false, err
	}
	if d.NextAttemptAt != nil {
		if wait := d.NextAttemptAt.Sub(s.cfg.Now()); wait > 0 {
			s.wakeIn(wait)
			return false, nil
		}
	}
	ok, err := s.attempt(ctx, w, d, false)
	return ok, err
}

const (
	// cutSQL bounds one read to about Window raw clicks, whatever the filters. The
	// output is named apart from the column: ORDER BY xid would otherwise sort by the
	// text (the whole window) instead of walking click_logs_xid_idx.
	cutSQL = `
SELECT c.xid::text AS cut FROM click_logs c WHERE c.xid >= $1::text::xid8 AND c.xid < $2::text::xid8
ORDER BY c.xid OFFSET $3 LIMIT 1`

	// windowSQL reads the window after the cursor in position order, from click_logs
	// alone and through its xid index: cutSQL bounds it. The links filter and bots are
	// tested here; tags and domain, which need the link, in Go (see linksSQL). The
	// text output is named apart from the column (at): named xid, it would be what
	// ORDER BY xid sorts, as text ('10' before '9'), after reading the whole window. The links test
	// is wrapped in IS TRUE so that it is never an index condition: planned with link
	// ids, PostgreSQL intersected the window with those links' whole history.
	windowSQL = `
SELECT c.xid::text AS at, c.event_id, c.link_id, c.clicked_at, c.country, c.referer_host, c.browser, c.os,
       c.device, c.is_bot, c.bot_reason
FROM click_logs c
WHERE c.xid >= $1::text::xid8 AND (c.xid, c.event_id) > ($1::text::xid8, $2::uuid) AND c.xid < $3::text::xid8
  AND ($4 OR NOT c.is_bot) AND ($5::bigint[] IS NULL OR (c.link_id = ANY($5)) IS TRUE)
ORDER BY c.xid, c.event_id
LIMIT $6`

	// linksSQL reads the slug, host and tags of the links a window's clicks are on,
	// each once. Joined to every click in SQL, a link was looked up per click: with
	// the tables' statistics missing, as in a hop's first minutes, half of a read's time.
	linksSQL = `
SELECT l.id, l.slug, d.host, l.tags FROM links l JOIN domains d ON d.id = l.domain_id WHERE l.id = ANY($1)`

	skipSQL = `
UPDATE webhooks SET cursor_xid = $2::text::xid8, cursor_event = $3
WHERE id = $1 AND cursor_xid = $4::text::xid8 AND cursor_event = $5`
)

// errSkipped means a window of clicks held none for the webhook and was passed over.
var errSkipped = errors.New("no clicks for this webhook in the window")

// Event is one click as a webhook receives it. The id never changes across retries:
// receivers deduplicate by it.
type Event struct {
	Type      string    `json:"type"` // "click", or "ping" for POST /webhooks/{id}/test
	ID        uuid.UUID `json:"id"`
	Slug      string    `json:"slug,omitempty"`
	Domain    string    `json:"domain,omitempty"`
	ClickedAt time.Time `json:"clicked_at"`
	Country   string    `json:"country"`
	Referer   string    `json:"referer"`
	Browser   string    `json:"browser"`
	OS        string    `json:"os"`
	Device    string    `json:"device"`
	Bot       bool      `json:"bot"`
	BotReason string    `json:"bot_reason"`
}

// Payload is the body of a delivery.
type Payload struct {
	Events []Event `json:"events"`
}

// readAhead is what one read of a window found for a webhook beyond the batch it
// made: the next batches come from it while the cursor is where the last one left it,
// so a window is read (and sorted) once, not once per batch.
type readAhead struct {
	after  horizon.Position   // valid while the webhook's cursor is here
	of     filters            // and its filters are these
	events []Event            // in position order
	pos    []horizon.Position // of each event
	end    horizon.Position   // where the cursor goes once every event is delivered
}

// nextBatch makes the webhook's next batch from clicks committed after its cursor:
// up to BatchSize events, or fewer once the oldest has waited BatchWait. It returns
// ErrNoDelivery when there is nothing to send yet.
func (s *Service) nextBatch(ctx context.Context, w Webhook) (Delivery, error) {
	s.mu.Lock()
	ra, ok := s.ahead[w.ID]
	delete(s.ahead, w.ID)
	s.mu.Unlock()
	if !ok || ra.after != w.cursor || !ra.of.equal(w.filters()) {
		var err error
		if ra, err = s.read(ctx, w); err != nil {
			return Delivery{}, err
		}
	}
	n := min(len(ra.events), s.cfg.BatchSize)
	to := ra.end
	if n < len(ra.events) {
		to = ra.pos[n-1]
	}
	if n < s.cfg.BatchSize {
		if wait := ra.events[0].ClickedAt.Add(s.cfg.BatchWait).Sub(s.cfg.Now()); wait > 0 {
			s.wakeIn(wait)
			return Delivery{}, ErrNoDelivery
		}
	}
	body, err := json.Marshal(Payload{Events: ra.events[:n]})
	if err != nil {
		return Delivery{}, fmt.Errorf("encode batch: %w", err)
	}
	d, err := s.insertDelivery(ctx, w.ID, "events", body, n, &to)
	if err == nil && n < len(ra.events) && d.to != nil && *d.to == to {
		s.mu.Lock()
		s.ahead[w.ID] = readAhead{after: to, of: ra.of, events: ra.events[n:], pos: ra.pos[n:], end: ra.end}
		s.mu.Unlock()
	}
	return d, err
}

// read reads the window after the webhook's cursor: the events in it that pass its
// filters, up to readAheadWindows windows of them. A window without any moves the
// cursor past it and returns errSkipped (more clicks wait beyond it) or ErrNoDelivery.
func (s *Service) read(ctx context.Context, w Webhook) (readAhead, error) {
	h, err := horizon.Read(ctx, s.pool)
	if err != nil {
		return readAhead{}, err
	}
	if w.cursor.Reached(h) {
		return readAhead{}, ErrNoDelivery
	}
	end := h
	var cut string
	err = s.pool.QueryRow(ctx, cutSQL, horizon.FormatXID(w.cursor.XID), horizon.FormatXID(h), s.cfg.Window).Scan(&cut)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return readAhead{}, fmt.Errorf("bound read: %w", err)
	default:
		if end, err = horizon.ParseXID(cut); err != nil {
			return readAhead{}, err
		}
		end++ // the cut's transaction is read whole, so a window is never empty
	}
	limit := s.cfg.Window * readAheadWindows
	rows, err := s.pool.Query(ctx, windowSQL, horizon.FormatXID(w.cursor.XID), w.cursor.Event, horizon.FormatXID(end),
		w.IncludeBots, w.linkIDs, limit)
	if err != nil {
		return readAhead{}, fmt.Errorf("read clicks: %w", err)
	}
	type click struct {
		Event
		link int64
		pos  horizon.Position
	}
	var (
		clicks = make([]click, 0, 2*s.cfg.Window) // a window and a transaction, mostly
		c      = click{Event: Event{Type: "click"}}
		xid    string
		ids    []int64
		seen   = map[int64]bool{}
	)
	if _, err := pgx.ForEachRow(rows, []any{&xid, &c.ID, &c.link, &c.ClickedAt, &c.Country, &c.Referer, &c.Browser,
		&c.OS, &c.Device, &c.Bot, &c.BotReason}, func() error {
		var err error
		if c.pos.XID, err = horizon.ParseXID(xid); err != nil {
			return err
		}
		c.pos.Event = c.ID
		c.ClickedAt = c.ClickedAt.UTC()
		clicks = append(clicks, c)
		if !seen[c.link] {
			seen[c.link] = true
			ids = append(ids, c.link)
		}
		return nil
	}); err != nil {
		return readAhead{}, fmt.Errorf("read clicks: %w", err)
	}
	links, err := s.readLinks(ctx, ids)
	if err != nil {
		return readAhead{}, err
	}
	ra := readAhead{after: w.cursor, of: w.filters(), end: horizon.Position{XID: end}}
	if len(clicks) == limit {
		ra.end = clicks[len(clicks)-1].pos // every click up to here was looked at
	}
	for id, l := range links {
		if (w.Tags != nil && !slices.ContainsFunc(w.Tags, func(t string) bool { return slices.Contains(l.tags, t) })) ||
			(w.Domain != nil && l.host != *w.Domain) {
			delete(links, id) // filtered out: its clicks are passed over
		}
	}
	for _, c := range clicks {
		l, ok := links[c.link]
		if !ok {
			continue
		}
		c.Slug, c.Domain = l.slug, l.host
		ra.events = append(ra.events, c.Event)
		ra.pos = append(ra.pos, c.pos)
	}
	if len(ra.events) == 0 {
		// Nothing in the window is for this webhook: skip it, unless the cursor moved
		// meanwhile (another instance, or an answer that just came).
		if _, err := s.pool.Exec(ctx, skipSQL, w.ID, horizon.FormatXID(ra.end.XID), ra.end.Event, horizon.FormatXID(w.cursor.XID), w.cursor.Event); err != nil {
			return readAhead{}, fmt.Errorf("skip clicks: %w", err)
		}
		if ra.end.XID < h {
			return readAhead{}, errSkipped // more clicks wait beyond the window
		}
		return readAhead{}, ErrNoDelivery
	}
	return ra, nil
}

// windowLink is what a webhook's read needs of a link.
type windowLink struct {
	slug, host string
	tags       []string
}

// readLinks reads the links with ids (see linksSQL).
func (s *Service) readLinks(ctx context.Context, ids []int64) (map[int64]windowLink, error) {
	out := make(map[int64]windowLink, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, linksSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("read the clicks' links: %w", err)
	}
	var (
		id int64
		l  windowLink
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &l.slug, &l.host, &l.tags}, func() error {
		out[id] = l
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the clicks' links: %w", err)
	}
	return out, nil
}

// readAheadWindows bounds the events one read returns, in windows. A window holds the
// cut's transaction whole, and ingest commits up to 5,000 clicks at a time, so a
// window of 1,000 may hold 6,000: a read that stopped short of its end would leave
// the rest to the next read, which scans the cut's transaction again from its start
// (the xid index does not order a transaction's clicks) and throws away what it already
// sent. The bound keeps a webhook's read-ahead to about 1 MB, and it is dropped when a
// batch fails, so a receiver that is down holds none.
const readAheadWindows = 6

// send POSTs body, signed, and returns the HTTP status (0 when there was no answer).
func (s *Service) send(ctx context.Context, w Webhook, deliveryID int64, body []byte) (int, time.Duration, error) {
	secret, err := s.open(w.sealed)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hop-webhook/1")
	req.Header.Set("Hop-Webhook-Id", strconv.FormatInt(w.ID, 10))
	req.Header.Set("Hop-Delivery-Id", strconv.FormatInt(deliveryID, 10))
	req.Header.Set("Hop-Signature", Sign(secret, s.cfg.Now(), body))
	start := time.Now()
	resp, err := s.client.Do(req)
	took := time.Since(start)
	if err != nil {
		return 0, took, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	return resp.StatusCode, took, nil
}

const (
	deliveredSQL = `
UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, http_status = $2,
       latency_ms = $3, error = '', last_attempt_at = $4, delivered_at = $4
WHERE id = $1`
	failedAttemptSQL = `
UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, http_status = $3, latency_ms = $4,
       error = $5, last_attempt_at = $6, next_attempt_at = $7
WHERE id = $1`
	// healthySQL writes only when there is something to clear: it runs after every
	// delivered batch.
	healthySQL  = `UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL`
	reenableSQL = `UPDATE webhooks SET failing_since = NULL, disabled_at = NULL WHERE id = $1`
	failingSQL  = `UPDATE webhooks SET failing_since = COALESCE(failing_since, $2) WHERE id = $1`
	disableSQL  = `UPDATE webhooks SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL`

	// lockWebhookSQL starts recording an attempt; see attempt.
	lockWebhookSQL = `SELECT url FROM webhooks WHERE id = $1 FOR NO KEY UPDATE`
)

// attempt sends d once and records the answer. A 2xx marks it delivered and, for an
// events batch, moves the webhook's cursor past it in the same transaction. A failure
// schedules the next try with backoff, or, once the batch or the webhook has failed
// for GiveUp, keeps the batch as failed (re-sendable) and moves on; a webhook failing
// for GiveUp is disabled. manual is a retry asked for through the API: it re-enables a
// disabled webhook when it succeeds and never changes the schedule when it fails. It
// reports whether the attempt succeeded.
func (s *Service) attempt(ctx context.Context, w Webhook, d Delivery, manual bool) (bool, error) {
	status, took, sendErr := s.send(ctx, w, d.ID, d.body)
	if ctx.Err() != nil {
		return false, ctx.Err() // stopping: the batch stays as it was and is sent again
	}
	now := s.cfg.Now()
	ok := sendErr == nil && status >= 200 && status < 300
	s.latency.Observe(took.Seconds())
	var httpStatus *int
	if status != 0 {
		httpStatus = &status
	}
	latency := float64(took.Microseconds()) / 1000
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("record attempt: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	// The webhook's row first, as Update takes it (one lock order, no deadlock with a
	// PATCH), and its URL as it is now: a URL changed during the send makes this
	// attempt's failure count for nothing.
	var url string
	switch err := tx.QueryRow(ctx, lockWebhookSQL, w.ID).Scan(&url); {
	case errors.Is(err, pgx.ErrNoRows):
		return false, ErrNotFound // deleted meanwhile, with its deliveries
	case err != nil:
		return false, fmt.Errorf("record attempt: %w", err)
	}
	moved := url != w.URL
	events := d.Kind == "events"
	if ok {
		s.results.WithLabelValues("ok").Inc()
		if _, err := tx.Exec(ctx, deliveredSQL, d.ID, status, latency, now); err != nil {
			return false, fmt.Errorf("record delivery: %w", err)
		}
		if events && d.to != nil {
			if err := advance(ctx, tx, w.ID, *d.to); err != nil {
				return false, err
			}
		}
		switch {
		case manual && w.Disabled:
			_, err = tx.Exec(ctx, reenableSQL, w.ID)
		case events:
			_, err = tx.Exec(ctx, healthySQL, w.ID)
		}
		if err != nil {
			return false, fmt.Errorf("record webhook health: %w", err)
		}
		if err := tx.Commit(ctx); err != nil {
			return false, fmt.Errorf("record delivery: %w", err)
		}
		return true, nil
	}
	s.results.WithLabelValues("failed").Inc()
	s.mu.Lock()
	delete(s.ahead, w.ID) // read again once the receiver is back
	s.mu.Unlock()
	msg := ""
	switch {
	case sendErr != nil:
		msg = sendErr.Error()
	default:
		msg = fmt.Sprintf("receiver answered %d", status)
	}
	if len(msg) > 500 {
		msg = msg[:500]
	}
	// The cut may split a rune (the message holds the URL, which may be non-ASCII), and
	// PostgreSQL refuses invalid UTF-8: an attempt it cannot record is never backed off.
	msg = strings.ToValidUTF8(msg, "")
	newStatus, next := d.Status, now
	if d.NextAttemptAt != nil {
		next = *d.NextAttemptAt
	}
	switch {
	case moved && events && d.Status == "pending":
		// Sent to the URL the webhook had: the new one is tried at once, and neither the
		// batch's age nor the webhook's failing time is judged by the old one's answer.
		next = now
	case events && !manual && d.Status == "pending":
		failingSince := now
		if w.FailingSince != nil {
			failingSince = *w.FailingSince
		}
		giveUp := now.Sub(d.CreatedAt) >= s.cfg.GiveUp
		disable := now.Sub(failingSince) >= s.cfg.GiveUp
		if giveUp || disable {
			newStatus = "failed"
			if d.to != nil {
				if err := advance(ctx, tx, w.ID, *d.to); err != nil {
					return false, err
				}
			}
		} else {
			next = now.Add(s.backoff(d.Attempts + 1))
		}
		if _, err := tx.Exec(ctx, failingSQL, w.ID, now); err != nil {
			return false, fmt.Errorf("record webhook health: %w", err)
		}
		if disable {
			if _, err := tx.Exec(ctx, disableSQL, w.ID, now); err != nil {
				return false, fmt.Errorf("disable webhook: %w", err)
			}
			s.logger.Warn("webhook disabled after failing for too long", "webhook", w.ID, "failing_since", failingSince)
		}
	case d.Kind == "ping" && d.Status == "pending":
		newStatus = "failed"
	}
	if _, err := tx.Exec(ctx, failedAttemptSQL, d.ID, newStatus, httpStatus, latency, msg, now, next); err != nil {
		return false, fmt.Errorf("record attempt: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("record attempt: %w", err)
	}
	return false, nil
}
