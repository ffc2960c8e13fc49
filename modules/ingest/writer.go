package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// clickColumns is the COPY column list of click_logs; xid takes its default.
var clickColumns = []string{
	"event_id", "link_id", "clicked_at", "ip", "country", "referer", "referer_host",
	"user_agent", "browser", "os", "device", "is_bot", "bot_reason", "visitor_hash",
	"utm_source", "utm_medium", "utm_campaign",
}

// writer enriches events and writes them to click_logs idempotently. The stream
// services and the local log reader each have one over the same enricher, so both
// paths give the same rows and a click that took both paths is stored once.
type writer struct {
	pool   *pgxpool.Pool
	enr    *Enricher
	logger *slog.Logger
	m      *writerMetrics
	bufs   sync.Pool // *rowBuf: a batch's rows, reused by the next batch
}

func newWriter(pool *pgxpool.Pool, enr *Enricher, source string, logger *slog.Logger) *writer {
	return &writer{pool: pool, enr: enr, logger: logger, m: newWriterMetrics(source)}
}

// write stores events. It returns only once every row is committed (or was already
// there), or with an error after which the caller must retry the whole batch.
func (w *writer) write(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	start := time.Now()
	err := w.writeOnce(ctx, events)
	if err != nil {
		w.m.errors.Inc()
		return err
	}
	w.m.batchSize.Observe(float64(len(events)))
	w.m.batchDuration.Observe(time.Since(start).Seconds())
	w.m.rows.Add(float64(len(events)))
	return nil
}

func (w *writer) writeOnce(ctx context.Context, events []Event) error {
	buf, _ := w.bufs.Get().(*rowBuf)
	if buf == nil {
		buf = new(rowBuf)
	}
	rows, err := w.enr.enrich(ctx, events, buf)
	defer func() {
		clear(buf.rows[:cap(buf.rows)]) // keep no event's strings alive until the next batch
		w.bufs.Put(buf)
	}()
	if err != nil {
		return err
	}
	_, err = w.pool.CopyFrom(ctx, pgx.Identifier{"click_logs"}, clickColumns, &rowSource{rows: rows})
	switch {
	case err == nil:
		return nil
	case pgCode(err) == "23505":
		// A replayed batch (a crash between commit and XACK or log truncation, or a
		// click that took both paths): insert only what is missing.
		if err := w.insertIdempotent(ctx, rows); err != nil {
			return fmt.Errorf("insert clicks idempotently: %w", err)
		}
		return nil
	case isDataError(err):
		return w.insertEach(ctx, rows)
	default:
		return fmt.Errorf("copy clicks: %w", err)
	}
}

const insertClicksUnnest = `
INSERT INTO click_logs (event_id, link_id, clicked_at, ip, country, referer, referer_host,
                        user_agent, browser, os, device, is_bot, bot_reason, visitor_hash,
                        utm_source, utm_medium, utm_campaign)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bool[],
                     $13::text[], $14::bytea[], $15::text[], $16::text[], $17::text[])
ON CONFLICT (link_id, clicked_at, event_id) DO NOTHING`

func (w *writer) insertIdempotent(ctx context.Context, rows []clickRow) error {
	n := len(rows)
	var (
		ids                                   = make([][16]byte, n)
		links                                 = make([]int64, n)
		times                                 = make([]time.Time, n)
		ips, countries, referers, hosts       = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		uas, browsers, oses, devices, reasons = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		bots                                  = make([]bool, n)
		hashes                                = make([][]byte, n)
		sources, mediums, campaigns           = make([]pgtype.Text, n), make([]pgtype.Text, n), make([]pgtype.Text, n)
	)
	for i := range rows {
		r := &rows[i]
		ids[i], links[i], times[i] = r.eventID, r.linkID, r.clickedAt
		ips[i], countries[i], referers[i], hosts[i] = r.ip, r.country, r.referer, r.refererHost
		uas[i], browsers[i], oses[i], devices[i] = r.userAgent, r.browser, r.os, r.device
		bots[i], reasons[i], hashes[i] = r.isBot, r.botReason, r.visitorHash
		sources[i], mediums[i], campaigns[i] = nullText(r.utmSource), nullText(r.utmMedium), nullText(r.utmCampaign)
	}
	_, err := w.pool.Exec(ctx, insertClicksUnnest, ids, links, times, ips, countries, referers, hosts,
		uas, browsers, oses, devices, bots, reasons, hashes, sources, mediums, campaigns)
	return err
}

const insertClick = `
INSERT INTO click_logs (event_id, link_id, clicked_at, ip, country, referer, referer_host,
                        user_agent, browser, os, device, is_bot, bot_reason, visitor_hash,
                        utm_source, utm_medium, utm_campaign)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
ON CONFLICT (link_id, clicked_at, event_id) DO NOTHING`

// insertEach is the slow path for a batch PostgreSQL rejected as invalid data: rows go
// one by one and a row refused as invalid is logged and skipped, never retried forever.
func (w *writer) insertEach(ctx context.Context, rows []clickRow) error {
	for i := range rows {
		r := &rows[i]
		_, err := w.pool.Exec(ctx, insertClick, r.eventID, r.linkID, r.clickedAt, r.ip, r.country,
			r.referer, r.refererHost, r.userAgent, r.browser, r.os, r.device, r.isBot, r.botReason, r.visitorHash,
			nullText(r.utmSource), nullText(r.utmMedium), nullText(r.utmCampaign))
		if err == nil {
			continue
		}
		if !isDataError(err) {
			return fmt.Errorf("insert click: %w", err)
		}
		w.m.rejected.Inc()
		w.logger.Error("click rejected by PostgreSQL", "event_id", r.eventID, "link_id", r.linkID, "error", err)
	}
	return nil
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// isDataError reports errors caused by a row's content (SQLSTATE classes 22 and 23,
// unique violations aside), which retrying cannot fix.
func isDataError(err error) bool {
	c := pgCode(err)
	return len(c) == 5 && (c[:2] == "22" || c[:2] == "23") && c != "23505"
}

// rowSource feeds rows to CopyFrom without building a [][]any.
type rowSource struct {
	rows []clickRow
	i    int
	vals [17]any
}

func (s *rowSource) Next() bool {
	s.i++
	return s.i <= len(s.rows)
}

func (s *rowSource) Values() ([]any, error) {
	r := &s.rows[s.i-1]
	// Each value points into the row: an interface holds a pointer-shaped value
	// without allocating, where a string, time or [16]byte would be copied to the
	// heap, thirteen allocations per row. pgx encodes them through its Valuer
	// interfaces; a bare pointer would instead take its reflective dereference.
	s.vals = [17]any{uuidValue{&r.eventID}, int8Value{&r.linkID}, timeValue{&r.clickedAt},
		textValue{&r.ip}, textValue{&r.country}, textValue{&r.referer}, textValue{&r.refererHost},
		textValue{&r.userAgent}, textValue{&r.browser}, textValue{&r.os}, textValue{&r.device},
		r.isBot, textValue{&r.botReason}, bytesValue{&r.visitorHash},
		nullTextValue{&r.utmSource}, nullTextValue{&r.utmMedium}, nullTextValue{&r.utmCampaign}}
	return s.vals[:], nil
}

// Column values for rowSource, each a pointer to a clickRow field.
type (
	uuidValue     struct{ p *uuid.UUID }
	int8Value     struct{ p *int64 }
	timeValue     struct{ p *time.Time }
	textValue     struct{ p *string }
	nullTextValue struct{ p *string } // "" is NULL
	bytesValue    struct{ p *[]byte }
)

func (v uuidValue) UUIDValue() (pgtype.UUID, error) {
	return pgtype.UUID{Bytes: *v.p, Valid: true}, nil
}
func (v int8Value) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: *v.p, Valid: true}, nil
}
func (v timeValue) TimestamptzValue() (pgtype.Timestamptz, error) {
	return pgtype.Timestamptz{Time: *v.p, Valid: true}, nil
}
func (v textValue) TextValue() (pgtype.Text, error) {
	return pgtype.Text{String: *v.p, Valid: true}, nil
}
func (v nullTextValue) TextValue() (pgtype.Text, error) { return nullText(*v.p), nil }

// nullText is s, or NULL when s is empty.
func nullText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// BytesValue returns nil, stored as NULL, for a row without a visitor hash.
func (v bytesValue) BytesValue() ([]byte, error) { return *v.p, nil }

func (s *rowSource) Err() error { return nil }

// backoff doubles a delay between min and max; reset after a success.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	b.cur = min(max(b.cur*2, b.min), b.max)
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx is done, reporting whether it slept the full time.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
