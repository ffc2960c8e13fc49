package stats

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
)

const csvLinkSQL = `SELECT id, deleted_at IS NOT NULL FROM links WHERE domain_id = $2 AND slug = $1`

// csvSelectSQL reads a link's raw clicks in [from, to), which the handler streams straight
// from PostgreSQL as CSV with COPY. COPY takes no parameters, so the link id and bounds
// are formatted in (an integer and two timestamps formatted here: nothing from the
// request verbatim). Cells a spreadsheet would read as a formula get a leading
// apostrophe. Campaign columns are empty for clicks without the parameter. The
// columns only ever grow at the end, so a reader by position keeps working.
// click_logs' unique key (link_id, clicked_at, event_id) finds the range.
const csvSelectSQL = `
SELECT to_char(clicked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS time,
       %[4]s AS country, %[5]s AS referer, %[6]s AS browser, %[7]s AS os, %[8]s AS device,
       CASE WHEN is_bot THEN 'true' ELSE 'false' END AS is_bot,
       %[9]s AS bot_reason, %[10]s AS ip,
       %[11]s AS utm_source, %[12]s AS utm_medium, %[13]s AS utm_campaign
FROM click_logs
WHERE link_id = %[1]d AND clicked_at >= '%[2]s' AND clicked_at < '%[3]s'
ORDER BY clicked_at`

// csvSelect is csvSelectSQL for one link and range.
func csvSelect(linkID int64, from, to time.Time) string {
	return fmt.Sprintf(csvSelectSQL, linkID, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339),
		safeCell("country"), safeCell("referer"), safeCell("browser"), safeCell("os"),
		safeCell("device"), safeCell("bot_reason"), safeCell("ip"),
		safeCell("COALESCE(utm_source, '')"), safeCell("COALESCE(utm_medium, '')"), safeCell("COALESCE(utm_campaign, '')"))
}

// safeCell neutralises CSV formula injection in column col.
func safeCell(col string) string {
	return fmt.Sprintf(`CASE WHEN left(%[1]s, 1) IN ('=', '+', '-', '@', E'\t', E'\r') THEN '''' || %[1]s ELSE %[1]s END`, col)
}

// flushEvery is how many bytes are written between flushes, so the client sees rows as
// they are read and the server never holds more than that.
const flushEvery = 64 << 10

// clicksCSV answers GET /links/{slug}/clicks.csv?start=&end=&tz=: the raw clicks of the
// range (default the last 30 days), oldest first, streamed in constant memory with
// COPY … TO STDOUT. Times are UTC. Clicks already removed by retention are not in it.
func (h *Handler) clicksCSV(c echo.Context) error {
	q, err := h.query(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	slug := c.Param("slug")
	var (
		linkID  int64
		deleted bool
	)
	switch err := h.reader.pool.QueryRow(ctx, csvLinkSQL, slug, domainOr(q.domain)).Scan(&linkID, &deleted); {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("find link: %w", err)
	case deleted:
		return ErrGone
	}
	from, to := q.bounds()
	query := "COPY (" + csvSelect(linkID, from, to) + ") TO STDOUT WITH (FORMAT csv, HEADER)"

	conn, err := h.reader.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()

	res := c.Response()
	res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	res.Header().Set(echo.HeaderContentDisposition, contentDisposition(slug))
	res.Header().Set("Cache-Control", "no-store")
	w := &flushWriter{w: res, rc: http.NewResponseController(res)}
	if _, err := conn.Conn().PgConn().CopyTo(ctx, w, query); err != nil {
		if !res.Committed {
			// Nothing is out: answer the error as such, not as a file to save.
			res.Header().Del(echo.HeaderContentDisposition)
			res.Header().Del(echo.HeaderContentType)
			return fmt.Errorf("copy clicks: %w", err)
		}
		// Part of the file is out: abort the connection so the client sees a failed
		// download rather than a truncated file that looks complete.
		if ctx.Err() == nil {
			h.reader.logger.Error("stream clicks csv", "slug", slug, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
	w.flush()
	return nil
}

// flushWriter flushes the response every flushEvery bytes.
type flushWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	pending int
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	f.pending += n
	if f.pending >= flushEvery {
		f.flush()
	}
	return n, err
}

func (f *flushWriter) flush() {
	f.pending = 0
	_ = f.rc.Flush() // not every writer can flush; the data still goes out as it fills
}

// contentDisposition names the download after the slug. Slugs are validated at creation;
// anything that could break out of the quoted string falls back to a fixed name.
func contentDisposition(slug string) string {
	name := slug + "-clicks.csv"
	if strings.ContainsFunc(slug, func(r rune) bool { return r < 0x20 || r >= 0x7f || r == '"' || r == '\\' }) {
		name = "clicks.csv"
	}
	return `attachment; filename="` + name + `"`
}
