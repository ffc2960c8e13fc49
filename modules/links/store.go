package links

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/internal/tally"
)

// Store keeps links in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	slug *slugger
}

// NewStore returns a store that generates slugs with the given secret and minimum length.
func NewStore(pool *pgxpool.Pool, slugSecret string, slugMinLength int) (*Store, error) {
	s, err := newSlugger(slugSecret, slugMinLength)
	if err != nil {
		return nil, err
	}
	return &Store{pool: pool, slug: s}, nil
}

// recordedClicks is every click of a link counted so far, humans (total_clicks) and
// bots (from the daily rollups), plus what an import's source had used of its limit:
// what the API shows as clicks_used without a limit.
const recordedClicks = `(links.total_clicks + links.imported_used + coalesce((SELECT sum(d.bot_clicks) FROM daily_stats d WHERE d.link_id = links.id), 0))::bigint`

// A limit set on a link without one starts from every click of it stored so far
// (startingClicks): the ones counted (recordedClicks) and the ones in click_logs the
// aggregator has not counted yet. Without the latter a limit set seconds after a burst,
// or while a long transaction holds the aggregator back, let that many more through.
//
// The counts are read after the statement that waits for the link's row
// (lockForLimitSQL), never in it: PostgreSQL re-reads a row changed meanwhile but not
// the tables beside it, so an aggregator batch committed during the wait was counted
// twice (links.total_clicks new, the uncounted rows old). The lock also keeps "the link
// has no limit" true until the limit is written, so a concurrent PATCH cannot make the
// CASE below write a start for a link whose limit it just removed.
const (
	lockForLimitSQL = `SELECT id, max_clicks IS NULL FROM links WHERE domain_id = $1 AND slug = $2 AND deleted_at IS NULL FOR UPDATE`

	countedClicksSQL = `SELECT ` + recordedClicks + `, (SELECT watermark::text FROM aggregator_state WHERE id = 1) FROM links WHERE id = $1`

	// uncountedClicksSQL runs planned for its watermark (QueryExecModeExec), so
	// PostgreSQL reads the few rows from it on through the xid index; the link is tested
	// after (IS TRUE keeps it from being an index condition: a link's rows may be
	// millions).
	uncountedClicksSQL = `SELECT count(*) FROM click_logs WHERE xid >= $1::text::xid8 AND (link_id = $2) IS TRUE`
)

// startingClicks locks the link in tx and returns what a new limit on it starts from,
// or nil when it has a limit already (or no such link: update answers that).
func startingClicks(ctx context.Context, tx pgx.Tx, domainID int64, slug string) (*int64, error) {
	var (
		id        int64
		unlimited bool
	)
	switch err := tx.QueryRow(ctx, lockForLimitSQL, domainID, slug).Scan(&id, &unlimited); {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("lock link: %w", err)
	case !unlimited:
		return nil, nil
	}
	var (
		counted, uncounted int64
		watermark          string
	)
	if err := tx.QueryRow(ctx, countedClicksSQL, id).Scan(&counted, &watermark); err != nil {
		return nil, fmt.Errorf("read counted clicks: %w", err)
	}
	if err := tx.QueryRow(ctx, uncountedClicksSQL, pgx.QueryExecModeExec, watermark, id).Scan(&uncounted); err != nil {
		return nil, fmt.Errorf("count clicks not yet counted: %w", err)
	}
	n := counted + uncounted
	return &n, nil
}

// linkColumns are what scanLink reads, as the redirect needs them: clicks_used is the
// counter, which only means something while the link has a limit.
const linkColumns = `id, slug, original_url, redirect_status, expires_at, max_clicks,
	coalesce(password_hash, ''), tags, total_clicks, created_at, updated_at, deleted_at,
	clicks_used, forward_query, expired_url, title, imported_clicks, domain_id`

// apiColumns are linkColumns with clicks_used as the API reports it. While a link has
// a limit the redirect counts every click it answers in clicks_used, exactly; without
// one nothing is counted on the redirect path (it stays free of writes), so the clicks
// recorded so far stand in for it.
const apiColumns = `id, slug, original_url, redirect_status, expires_at, max_clicks,
	coalesce(password_hash, ''), tags, total_clicks, created_at, updated_at, deleted_at,
	CASE WHEN max_clicks IS NULL THEN ` + recordedClicks + ` ELSE clicks_used END, forward_query, expired_url, title, imported_clicks, domain_id`

func scanLink(row pgx.Row) (Link, error) {
	var l Link
	var status int16
	err := row.Scan(&l.ID, &l.Slug, &l.OriginalURL, &status, &l.ExpiresAt, &l.MaxClicks,
		&l.PasswordHash, &l.Tags, &l.TotalClicks, &l.CreatedAt, &l.UpdatedAt, &l.DeletedAt,
		&l.ClicksUsed, &l.ForwardQuery, &l.ExpiredURL, &l.Title, &l.ImportedClicks, &l.DomainID)
	l.RedirectStatus = int(status)
	l.HasPassword = l.PasswordHash != ""
	if l.Tags == nil {
		l.Tags = []string{}
	}
	return l, err
}

// newLink is a validated create request.
type newLink struct {
	Slug           string // empty: generate
	URL            string
	RedirectStatus int
	ExpiresAt      *time.Time
	MaxClicks      *int64
	PasswordHash   string
	Tags           []string
	ForwardQuery   bool
	ExpiredURL     *string
	Title          *string
	CreatedAt      *time.Time // nil: now; set by imports to keep the source's date
	ImportedClicks int64
	ClicksUsed     int64 // with MaxClicks: how much of it an import's source had used (imported_used)
	DomainID       int64 // 0: the default domain
}

// defaultDomainID is the default domain's id (domains.DefaultID): links made before
// domains existed, or without one, belong to it.
const defaultDomainID int64 = 1

// domainOr is id, or the default domain for 0.
func domainOr(id int64) int64 {
	if id == 0 {
		return defaultDomainID
	}
	return id
}

// insertLink takes ids from the one links sequence whatever the domain, so generated
// slugs are unique across all domains; a slug is unique per domain.
const insertLink = `INSERT INTO links (id, slug, original_url, redirect_status, expires_at, max_clicks, password_hash, tags, forward_query, expired_url,
	title, created_at, imported_clicks, domain_id, clicks_used, imported_used)
VALUES (coalesce($1, nextval(pg_get_serial_sequence('links', 'id'))), $2, $3, $4, $5, $6, nullif($7, ''), coalesce($8::text[], '{}'), $9, $10,
	$11, coalesce($12, now()), $13, $14, $15, $15)
ON CONFLICT (domain_id, slug) DO NOTHING
RETURNING ` + apiColumns

// insertArgs are insertLink's arguments for n with id (nil: the next one) and slug.
func (n newLink) insertArgs(id any, slug string) []any {
	return []any{id, slug, n.URL, n.RedirectStatus, n.ExpiresAt, n.MaxClicks, n.PasswordHash, n.Tags, n.ForwardQuery, n.ExpiredURL,
		n.Title, n.CreatedAt, n.ImportedClicks, domainOr(n.DomainID), n.ClicksUsed}
}

const nextLinkID = `SELECT nextval(pg_get_serial_sequence('links', 'id'))`

// create inserts a link. A custom slug that is taken (even by a deleted link) is
// ErrSlugTaken; a generated slug that collides with a custom one, or spells a reserved
// word, is skipped and the next id is tried.
func (s *Store) create(ctx context.Context, n newLink) (Link, error) {
	if n.Slug != "" {
		l, err := scanLink(s.pool.QueryRow(ctx, insertLink, n.insertArgs(nil, n.Slug)...))
		if errors.Is(err, pgx.ErrNoRows) {
			return Link{}, ErrSlugTaken
		}
		if err != nil {
			return Link{}, fmt.Errorf("insert link: %w", err)
		}
		return l, nil
	}
	for attempt := 0; attempt < 100; attempt++ {
		var id int64
		if err := s.pool.QueryRow(ctx, nextLinkID).Scan(&id); err != nil {
			return Link{}, fmt.Errorf("next link id: %w", err)
		}
		slug, err := s.slug.slug(id)
		if err != nil {
			return Link{}, err
		}
		if reserved[strings.ToLower(slug)] {
			continue
		}
		l, err := scanLink(s.pool.QueryRow(ctx, insertLink, n.insertArgs(id, slug)...))
		if errors.Is(err, pgx.ErrNoRows) {
			continue // a custom slug took this one
		}
		if err != nil {
			return Link{}, fmt.Errorf("insert link: %w", err)
		}
		return l, nil
	}
	return Link{}, errors.New("insert link: no free generated slug after 100 attempts")
}

const nextLinkIDs = `SELECT nextval(pg_get_serial_sequence('links', 'id')) FROM generate_series(1, $1)`

// createMany inserts links as create does, all in one transaction and one round trip
// (a pipelined batch): a bulk create of 1,000 links is one commit, not 1,000. errs[i]
// is ErrSlugTaken for a custom slug that is taken, by another link or by an earlier
// item of this call. A generated slug that collides with a custom one is created
// afterwards through create, which tries the next id.
func (s *Store) createMany(ctx context.Context, items []newLink) (links []Link, errs []error, err error) {
	links, errs = make([]Link, len(items)), make([]error, len(items))
	ids := make([]*int64, len(items))
	slugs := make([]string, len(items))
	var generated []int
	for i, n := range items {
		slugs[i] = n.Slug
		if n.Slug == "" {
			generated = append(generated, i)
		}
	}
	for len(generated) > 0 {
		rows, err := s.pool.Query(ctx, nextLinkIDs, len(generated))
		if err != nil {
			return nil, nil, fmt.Errorf("next link ids: %w", err)
		}
		next, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return nil, nil, fmt.Errorf("next link ids: %w", err)
		}
		var again []int
		for k, i := range generated {
			slug, err := s.slug.slug(next[k])
			if err != nil {
				return nil, nil, err
			}
			if reserved[strings.ToLower(slug)] {
				again = append(again, i)
				continue
			}
			ids[i], slugs[i] = &next[k], slug
		}
		generated = again
	}

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("insert links: %w", err)
	}
	defer tx.Rollback(ctx)
	b := &pgx.Batch{}
	for i, n := range items {
		b.Queue(insertLink, n.insertArgs(ids[i], slugs[i])...)
	}
	br := tx.SendBatch(ctx, b)
	var retry []int
	for i, n := range items {
		l, err := scanLink(br.QueryRow())
		switch {
		case errors.Is(err, pgx.ErrNoRows) && n.Slug == "":
			retry = append(retry, i)
		case errors.Is(err, pgx.ErrNoRows):
			errs[i] = ErrSlugTaken
		case err != nil:
			br.Close()
			return nil, nil, fmt.Errorf("insert links: %w", err)
		default:
			links[i] = l
		}
	}
	if err := br.Close(); err != nil {
		return nil, nil, fmt.Errorf("insert links: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, fmt.Errorf("insert links: %w", err)
	}
	for _, i := range retry {
		links[i], errs[i] = s.create(ctx, items[i])
	}
	return links, errs, nil
}

const selectLinkBySlug = `SELECT ` + linkColumns + ` FROM links WHERE slug = $2 AND domain_id = $1`

// FindBySlug returns the link with this slug on the default domain, deleted or not;
// ErrNotFound if there is none. See FindInDomain.
func (s *Store) FindBySlug(ctx context.Context, slug string) (Link, error) {
	return s.FindInDomain(ctx, defaultDomainID, slug)
}

// FindInDomain returns the link with this slug on domain domainID, deleted or not;
// ErrNotFound if there is none. Callers decide what a deleted link means (the redirect
// answers 410). It is the redirect's lookup: ClicksUsed is the raw counter, 0 for a
// link without a limit.
func (s *Store) FindInDomain(ctx context.Context, domainID int64, slug string) (Link, error) {
	l, err := scanLink(s.pool.QueryRow(ctx, selectLinkBySlug, domainOr(domainID), slug))
	if errors.Is(err, pgx.ErrNoRows) {
		return Link{}, ErrNotFound
	}
	if err != nil {
		return Link{}, fmt.Errorf("select link: %w", err)
	}
	return l, nil
}

const selectAPILinkBySlug = `SELECT ` + apiColumns + ` FROM links WHERE domain_id = $1 AND slug = $2`

// get returns a live link of a domain (0: the default) as the API shows it;
// ErrNotFound or ErrGone otherwise.
func (s *Store) get(ctx context.Context, domainID int64, slug string) (Link, error) {
	l, err := scanLink(s.pool.QueryRow(ctx, selectAPILinkBySlug, domainOr(domainID), slug))
	if errors.Is(err, pgx.ErrNoRows) {
		return Link{}, ErrNotFound
	}
	if err != nil {
		return Link{}, fmt.Errorf("select link: %w", err)
	}
	if l.DeletedAt != nil {
		return Link{}, ErrGone
	}
	return l, nil
}

// listQuery selects one page of live links, newest first.
type listQuery struct {
	Limit  int
	Before int64 // id cursor; 0 = from the newest
	Q      string
	Tag    string
	Status string // "" or one of the Status constants
	Domain int64  // 0: every domain
}

const listLinks = `SELECT ` + apiColumns + ` FROM links
WHERE deleted_at IS NULL
  AND ($1::bigint = 0 OR id < $1)
  AND ($2::text = '' OR slug ILIKE '%' || $2 || '%' ESCAPE '\' OR original_url ILIKE '%' || $2 || '%' ESCAPE '\')
  AND ($3::text = '' OR tags @> ARRAY[$3::text])
  AND CASE $5::text
      WHEN 'active' THEN (expires_at IS NULL OR expires_at > now()) AND (max_clicks IS NULL OR clicks_used < max_clicks)
      WHEN 'expired' THEN expires_at <= now()
      WHEN 'limit_reached' THEN (expires_at IS NULL OR expires_at > now()) AND clicks_used >= max_clicks
      ELSE true END
  AND ($6::bigint = 0 OR domain_id = $6)
ORDER BY id DESC
LIMIT $4`

// list runs listLinks planned with its values on every call: pgx sends it unnamed,
// after asking for its description (one more round trip, on a path that is not hot).
// Every filter is optional, so a generic plan (made without the values; PostgreSQL may
// switch a prepared statement to one after five runs) cannot use the index of the
// filter that is set, and read every live link: 0.4-0.7 s at 1M links. DescribeExec
// rather than CacheDescribe, which fails if DATABASE_URL turns pgx's description
// cache off.
func (s *Store) list(ctx context.Context, q listQuery) ([]Link, error) {
	rows, err := s.pool.Query(ctx, listLinks, pgx.QueryExecModeDescribeExec, q.Before, escapeLike(q.Q), q.Tag, q.Limit, q.Status, q.Domain)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Link, error) { return scanLink(r) })
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return out, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// encodeCursor and decodeCursor keep the page cursor opaque to clients.
func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if id, err := strconv.ParseInt(string(b), 10, 64); err == nil && id > 0 {
			return id, nil
		}
	}
	return 0, problem.Invalid("cursor is not a cursor returned by this API")
}

// linkPatch is a validated partial update; nil fields are left unchanged.
type linkPatch struct {
	URL            *string
	RedirectStatus *int
	ExpiresAt      **time.Time // set to nil pointer to clear
	MaxClicks      **int64
	PasswordHash   *string // "" clears
	Tags           *[]string
	ForwardQuery   *bool
	ExpiredURL     **string // set to nil pointer to clear
}

const updateLink = `UPDATE links SET
	original_url    = coalesce($2, original_url),
	redirect_status = coalesce($3, redirect_status),
	expires_at      = CASE WHEN $4 THEN $5 ELSE expires_at END,
	max_clicks      = CASE WHEN $6 THEN $7 ELSE max_clicks END,
	clicks_used     = CASE WHEN $6 AND $7::bigint IS NOT NULL AND max_clicks IS NULL THEN coalesce($14::bigint, clicks_used) ELSE clicks_used END,
	password_hash   = CASE WHEN $8::text IS NULL THEN password_hash ELSE nullif($8, '') END,
	tags            = coalesce($9, tags),
	forward_query   = coalesce($10, forward_query),
	expired_url     = CASE WHEN $11 THEN $12 ELSE expired_url END,
	updated_at      = now()
WHERE domain_id = $13 AND slug = $1 AND deleted_at IS NULL
RETURNING ` + apiColumns

func (s *Store) update(ctx context.Context, domainID int64, slug string, p linkPatch) (Link, error) {
	var expires *time.Time
	if p.ExpiresAt != nil {
		expires = *p.ExpiresAt
	}
	var maxClicks *int64
	if p.MaxClicks != nil {
		maxClicks = *p.MaxClicks
	}
	var status *int16
	if p.RedirectStatus != nil {
		v := int16(*p.RedirectStatus)
		status = &v
	}
	var expiredURL *string
	if p.ExpiredURL != nil {
		expiredURL = *p.ExpiredURL
	}
	run := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}, used *int64) (Link, error) {
		return scanLink(q.QueryRow(ctx, updateLink, slug, p.URL, status,
			p.ExpiresAt != nil, expires, p.MaxClicks != nil, maxClicks, p.PasswordHash, p.Tags,
			p.ForwardQuery, p.ExpiredURL != nil, expiredURL, domainOr(domainID), used))
	}
	var (
		l   Link
		err error
	)
	if maxClicks == nil {
		l, err = run(s.pool, nil)
	} else {
		// A limit is set: in a transaction, after startingClicks.
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			used, err := startingClicks(ctx, tx, domainOr(domainID), slug)
			if err != nil {
				return err
			}
			l, err = run(tx, used)
			return err
		})
	}
	if err == nil {
		return l, nil
	}
	// The transaction has ended: telling gone from unknown takes no second connection
	// while holding one.
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := s.get(ctx, domainID, slug); err != nil {
			return Link{}, err
		}
		return Link{}, ErrNotFound
	}
	return Link{}, fmt.Errorf("update link: %w", err)
}

// takeClick counts one click against a link's limit if the limit allows it. The row
// lock makes concurrent takes, from any number of instances, queue on the one row, so
// exactly max_clicks of them succeed. A link whose limit was removed counts the click.
const takeClick = `UPDATE links SET clicks_used = clicks_used + 1
WHERE id = $1 AND deleted_at IS NULL AND (max_clicks IS NULL OR clicks_used < max_clicks)
RETURNING clicks_used`

// TakeClick counts one click of link id against its max_clicks: true if the click may
// be answered with the target, false if the limit is reached (or the link is gone).
// A failure before the statement reached PostgreSQL (no connection could be opened)
// is tried again twice, briefly: it took nothing, and the visitor is waiting.
func (s *Store) TakeClick(ctx context.Context, id int64) (bool, error) {
	for attempt := 1; ; attempt++ {
		var used int64
		err := s.pool.QueryRow(ctx, takeClick, id).Scan(&used)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, pgx.ErrNoRows):
			return false, nil
		case attempt < 3 && notSent(err):
			select {
			case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
				continue
			case <-ctx.Done():
			}
		}
		return false, fmt.Errorf("take click: %w", err)
	}
}

// notSent reports whether err happened before anything reached the server.
func notSent(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.SafeToRetry(err)
}

const deleteLink = `UPDATE links SET deleted_at = now(), updated_at = now() WHERE domain_id = $1 AND slug = $2 AND deleted_at IS NULL`

func (s *Store) delete(ctx context.Context, domainID int64, slug string) error {
	tag, err := s.pool.Exec(ctx, deleteLink, domainOr(domainID), slug)
	if err != nil {
		return fmt.Errorf("delete link: %w", err)
	}
	if tag.RowsAffected() == 0 {
		_, err := s.get(ctx, domainID, slug)
		if err == nil {
			return ErrNotFound
		}
		return err
	}
	return nil
}

const selectTakenSlugs = `SELECT l.domain_id, l.slug FROM links l
JOIN unnest($1::int8[], $2::text[]) AS q(domain_id, slug) ON l.domain_id = q.domain_id AND l.slug = q.slug`

// slugOn is a slug on a domain: what is unique.
type slugOn struct {
	domain int64
	slug   string
}

// takenSlugs returns which of the slugs (slugs[i] on domain domainIDs[i], 0 the
// default) belong to a link, live or deleted (a deleted link's slug is never reused).
// Bulk dry runs use it to report conflicts.
func (s *Store) takenSlugs(ctx context.Context, domainIDs []int64, slugs []string) (map[slugOn]bool, error) {
	ids := make([]int64, len(domainIDs))
	for i, d := range domainIDs {
		ids[i] = domainOr(d)
	}
	rows, err := s.pool.Query(ctx, selectTakenSlugs, ids, slugs)
	if err != nil {
		return nil, fmt.Errorf("select taken slugs: %w", err)
	}
	out := map[slugOn]bool{}
	var k slugOn
	_, err = pgx.ForEachRow(rows, []any{&k.domain, &k.slug}, func() error {
		out[k] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("select taken slugs: %w", err)
	}
	return out, nil
}

// TagCount is a tag with the number of live links carrying it.
type TagCount struct {
	Tag   string `json:"tag"`
	Links int64  `json:"links"`
}

// listTags sums the +1/-1 rows the links triggers append per tag (00029), and says
// how many rows it summed; foldTags replaces them by one per tag.
const (
	listTags = `SELECT tag, sum(links)::int8, count(*) FROM tag_link_tallies GROUP BY tag ORDER BY 2 DESC, 1`
	foldTags = `WITH gone AS (DELETE FROM tag_link_tallies RETURNING tag, links)
INSERT INTO tag_link_tallies SELECT tag, sum(links) FROM gone GROUP BY tag HAVING sum(links) <> 0`
)

// TagCounts is the table of tag counts, for the tally.Folder that keeps it short.
func TagCounts() tally.Table { return tally.Table{List: listTags, Fold: foldTags} }

func (s *Store) tags(ctx context.Context) ([]TagCount, error) {
	counts, err := tally.Read[string](ctx, s.pool, TagCounts())
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	out := make([]TagCount, len(counts))
	for i, c := range counts {
		out[i] = TagCount{Tag: c.Key, Links: c.N}
	}
	return out, nil
}
