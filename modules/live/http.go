package live

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/horizon"
	"github.com/hop-dev/hop/internal/problem"
)

// Errors for the live stream of one link.
var (
	ErrNotFound = errors.New("link not found")
	ErrGone     = errors.New("link deleted")
)

// Routes registers GET /live and GET /links/{slug}/live on g, behind mw (which
// authenticates, when g does not).
func (f *Feed) Routes(g *echo.Group, mw ...echo.MiddlewareFunc) {
	get := []string{http.MethodGet, http.MethodHead}
	g.Match(get, "/live", f.handleAll, mw...)
	g.Match(get, "/links/:slug/live", f.handleLink, mw...)
}

// domainSQL finds a live domain by host.
const domainSQL = `SELECT host FROM domains WHERE host = lower($1) AND deleted_at IS NULL`

func (f *Feed) handleAll(c echo.Context) error {
	fl, err := parseFilter(c)
	if err != nil {
		return err
	}
	// ?domain= narrows the feed to the clicks on that short domain's links.
	if d := c.QueryParam("domain"); d != "" {
		err := f.pool.QueryRow(c.Request().Context(), domainSQL, d).Scan(&fl.domain)
		if errors.Is(err, pgx.ErrNoRows) {
			return problem.Invalid("domain: no domain %q", d)
		}
		if err != nil {
			return fmt.Errorf("find domain: %w", err)
		}
	}
	return f.stream(c, fl)
}

// linkIDSQL finds a link by slug on the domain named by ?domain= ($2, a host; empty:
// the default domain, id 1). A slug is unique only per domain.
const linkIDSQL = `SELECT id, deleted_at IS NOT NULL FROM links WHERE slug = $1
  AND domain_id = CASE WHEN $2::text = '' THEN 1 ELSE (SELECT id FROM domains WHERE host = lower($2) AND deleted_at IS NULL) END`

func (f *Feed) handleLink(c echo.Context) error {
	fl, err := parseFilter(c)
	if err != nil {
		return err
	}
	var deleted bool
	err = f.pool.QueryRow(c.Request().Context(), linkIDSQL, c.Param("slug"), c.QueryParam("domain")).Scan(&fl.linkID, &deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return problem.With(ErrNotFound, "no link %q", c.Param("slug"))
	}
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	if deleted {
		return problem.With(ErrGone, "link %q was deleted", c.Param("slug"))
	}
	return f.stream(c, fl)
}

// parseFilter reads ?bots= (default true: every click).
func parseFilter(c echo.Context) (filter, error) {
	fl := filter{bots: true}
	if v := c.QueryParam("bots"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fl, problem.Invalid("bots must be true or false, got %q", v)
		}
		fl.bots = b
	}
	return fl, nil
}

// lastEventID reads the resume point; a malformed one is ignored (start from now),
// as a browser's EventSource sends back whatever id it saw.
func lastEventID(r *http.Request) (uuid.UUID, bool) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("last_event_id")
	}
	if v == "" || len(v) > 64 {
		return uuid.UUID{}, false
	}
	id, err := uuid.Parse(v)
	if err != nil {
		return uuid.UUID{}, false
	}
	return id, true
}

// stream writes the event stream until the client leaves, falls a buffer behind, or
// the feed stops.
func (f *Feed) stream(c echo.Context, fl filter) error {
	req, w := c.Request(), c.Response()
	ctx := req.Context()
	var from *horizon.Position
	if id, ok := lastEventID(req); ok {
		p, found, err := f.resumeFrom(ctx, id, time.Now())
		if err != nil {
			return err
		}
		if found {
			from = &p
		}
	}
	rc := http.NewResponseController(w)
	// The server's read and write deadlines are for ordinary requests; a stream lives
	// as long as the client stays, and each write gets its own deadline instead.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a buffering proxy would hold events back
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodHead {
		return nil // the headers of a stream, and no stream
	}
	send := func(b []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(f.cfg.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := send([]byte("retry: 2000\n\n")); err != nil {
		return nil //nolint:nilerr // the client left; nothing to answer
	}
	write := func(cl *click) error { return send(cl.frame()) }
	var buf []byte
	s, err := f.subscribe(ctx, fl, from, write)
	if err != nil {
		if ctx.Err() == nil {
			f.logger.Warn("resuming a live stream failed", "error", err)
		}
		return nil // the stream has started: the client sees it end and reconnects
	}
	defer f.unsubscribe(s)
	// Says the client is now live: every click from here on reaches it.
	if err := send([]byte(": live\n\n")); err != nil {
		return nil //nolint:nilerr // the client left
	}
	beat := time.NewTicker(f.cfg.Heartbeat)
	defer beat.Stop()
	// Every event a wake-up brings goes out in one flush (a page of them at most).
	batch := make([]*click, 0, f.cfg.Page)
	for {
		var changed <-chan struct{}
		batch, changed, err = f.take(s, cap(batch), batch[:0])
		if err != nil {
			// Cut off (a whole ring behind: it reconnects with Last-Event-ID and
			// resumes from the database) or the feed stopped.
			return nil //nolint:nilerr // the stream has started; the client sees it end
		}
		if len(batch) > 0 {
			if buf, err = f.writeBatch(w, rc, batch, buf[:0]); err != nil {
				return nil //nolint:nilerr // the client left or stalled past the write deadline
			}
		}
		clear(batch)
		if len(batch) == cap(batch) {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-beat.C:
			if err := send([]byte(": heartbeat\n\n")); err != nil {
				return nil //nolint:nilerr // as above
			}
		}
	}
}

// bigRun is the size from which a run of adjacent frames is written from the shared
// block itself rather than copied into the client's buffer first.
const bigRun = 16 << 10

// writeBatch writes batch with one write deadline and one flush. Adjacent frames of
// one read are contiguous in their shared block: a long run (every click, for a client
// without a filter) is written straight from it; short runs are gathered in buf,
// which it returns for reuse.
func (f *Feed) writeBatch(w io.Writer, rc *http.ResponseController, batch []*click, buf []byte) ([]byte, error) {
	if err := rc.SetWriteDeadline(time.Now().Add(f.cfg.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return buf, err
	}
	emit := func(run []byte) error {
		if len(run) < bigRun {
			buf = append(buf, run...)
			return nil
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		_, err := w.Write(run)
		return err
	}
	for i := 0; i < len(batch); {
		cl := batch[i]
		end := cl.end
		for i++; i < len(batch) && &batch[i].block[0] == &cl.block[0] && batch[i].off == end; i++ {
			end = batch[i].end
		}
		if err := emit(cl.block[cl.off:end]); err != nil {
			return buf, err
		}
	}
	if len(buf) > 0 {
		if _, err := w.Write(buf); err != nil {
			return buf, err
		}
	}
	if cap(buf) > 4*bigRun {
		buf = nil // a burst of filtered clicks: do not keep its buffer
	}
	return buf[:0], rc.Flush()
}
