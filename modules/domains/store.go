package domains

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/internal/tally"
)

// Store keeps domains in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const domainColumns = `id, host, base_url, coalesce(root_redirect, ''), coalesce(not_found_redirect, ''),
	coalesce(expired_redirect, ''), is_default, created_at, updated_at`

func scanDomain(row pgx.Row) (Domain, error) {
	var d Domain
	err := row.Scan(&d.ID, &d.Host, &d.BaseURL, &d.RootRedirect, &d.NotFoundRedirect,
		&d.ExpiredRedirect, &d.Default, &d.CreatedAt, &d.UpdatedAt)
	return d, err
}

// domainCounts sums the +1/-1 rows the links triggers append per domain (00029), and
// foldDomainCounts replaces them by one per domain.
const (
	domainCounts     = `SELECT domain_id, sum(links)::int8, count(*) FROM domain_link_tallies GROUP BY domain_id`
	foldDomainCounts = `WITH gone AS (DELETE FROM domain_link_tallies RETURNING domain_id, links)
INSERT INTO domain_link_tallies SELECT domain_id, sum(links) FROM gone GROUP BY domain_id HAVING sum(links) <> 0`
)

// LinkCounts is the table of live links per domain, for the tally.Folder that keeps it
// short.
func LinkCounts() tally.Table { return tally.Table{List: domainCounts, Fold: foldDomainCounts} }

// LiveLinks returns the number of live links of each domain that has any, by domain
// id, from the counts the links triggers keep: a few rows, however many links.
func (s *Store) LiveLinks(ctx context.Context) (map[int64]int64, error) {
	counts, err := tally.Read[int64](ctx, s.pool, LinkCounts())
	if err != nil {
		return nil, fmt.Errorf("count live links: %w", err)
	}
	links := make(map[int64]int64, len(counts))
	for _, c := range counts {
		links[c.Key] = c.N
	}
	return links, nil
}

// List returns every live domain with its number of live links, the default first.
// Domains and counts are two reads: a domain added between them shows 0 links, as it
// has.
func (s *Store) List(ctx context.Context) ([]Domain, error) {
	out, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	links, err := s.LiveLinks(ctx)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Links = links[out[i].ID]
	}
	return out, nil
}

// loadDomains reads the live domains, the default first: what the registry holds.
const loadDomains = `SELECT ` + domainColumns + ` FROM domains WHERE deleted_at IS NULL ORDER BY is_default DESC, host`

func (s *Store) load(ctx context.Context) ([]Domain, error) {
	rows, err := s.pool.Query(ctx, loadDomains)
	if err != nil {
		return nil, fmt.Errorf("load domains: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Domain, error) { return scanDomain(r) })
	if err != nil {
		return nil, fmt.Errorf("load domains: %w", err)
	}
	return out, nil
}

// insertDomain adds a domain, or revives a removed one with the same host: its deleted
// links keep their slugs reserved. A live domain with the host is left alone (no row).
const insertDomain = `INSERT INTO domains (host, base_url, root_redirect, not_found_redirect, expired_redirect)
VALUES ($1, $2, nullif($3, ''), nullif($4, ''), nullif($5, ''))
ON CONFLICT (host) DO UPDATE SET base_url = EXCLUDED.base_url, root_redirect = EXCLUDED.root_redirect,
	not_found_redirect = EXCLUDED.not_found_redirect, expired_redirect = EXCLUDED.expired_redirect,
	deleted_at = NULL, created_at = now(), updated_at = now()
WHERE domains.deleted_at IS NOT NULL
RETURNING ` + domainColumns

// Create adds a domain from validated fields; ErrHostTaken if a live one has its host.
func (s *Store) Create(ctx context.Context, d Domain) (Domain, error) {
	out, err := scanDomain(s.pool.QueryRow(ctx, insertDomain, d.Host, d.BaseURL, d.RootRedirect, d.NotFoundRedirect, d.ExpiredRedirect))
	if errors.Is(err, pgx.ErrNoRows) {
		return Domain{}, ErrHostTaken
	}
	if err != nil {
		return Domain{}, fmt.Errorf("insert domain: %w", err)
	}
	return out, nil
}

// domainPatch is a validated partial update; nil fields stay as they are.
type domainPatch struct {
	BaseURL, RootRedirect, NotFoundRedirect, ExpiredRedirect *string
}

const updateDomain = `UPDATE domains SET
	base_url           = coalesce($2, base_url),
	root_redirect      = CASE WHEN $3::text IS NULL THEN root_redirect ELSE nullif($3, '') END,
	not_found_redirect = CASE WHEN $4::text IS NULL THEN not_found_redirect ELSE nullif($4, '') END,
	expired_redirect   = CASE WHEN $5::text IS NULL THEN expired_redirect ELSE nullif($5, '') END,
	updated_at         = now()
WHERE host = $1 AND deleted_at IS NULL AND NOT is_default
RETURNING ` + domainColumns

func (s *Store) update(ctx context.Context, host string, p domainPatch) (Domain, error) {
	d, err := scanDomain(s.pool.QueryRow(ctx, updateDomain, host, p.BaseURL, p.RootRedirect, p.NotFoundRedirect, p.ExpiredRedirect))
	if errors.Is(err, pgx.ErrNoRows) {
		return Domain{}, s.whyNot(ctx, host)
	}
	if err != nil {
		return Domain{}, fmt.Errorf("update domain: %w", err)
	}
	return d, nil
}

const lockDomain = `SELECT id, is_default FROM domains WHERE host = $1 AND deleted_at IS NULL FOR UPDATE`

// countLinks is the domain's number of live links and whether it has any link at all.
// Live links are counted through links_live_domain_id_idx and any link is one probe of
// the (domain_id, slug) key: counting both in one pass read every link of the domain,
// deleted ones too, from the table (through the key, which lacks deleted_at), however
// few were live; and the domain's row stays locked meanwhile, holding up new links on it.
const countLinks = `SELECT (SELECT count(*) FROM links WHERE domain_id = $1 AND deleted_at IS NULL),
	EXISTS (SELECT FROM links WHERE domain_id = $1)`

const softDeleteDomain = `UPDATE domains SET deleted_at = now(), updated_at = now() WHERE id = $1`

const purgeDomain = `DELETE FROM domains WHERE id = $1`

// Delete removes the domain with host: ErrHasLinks while it has live links,
// ErrDefaultDomain for the default, ErrNotFound if there is none. A domain whose
// deleted links still reserve slugs keeps its row, marked removed (see the migration).
// The row lock orders this against links being created on the domain, whose foreign
// key check locks the same row.
func (s *Store) Delete(ctx context.Context, host string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("delete domain: %w", err)
	}
	defer tx.Rollback(ctx)
	var id int64
	var def bool
	err = tx.QueryRow(ctx, lockDomain, host).Scan(&id, &def)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("delete domain: %w", err)
	case def:
		return ErrDefaultDomain
	}
	var live int64
	var hasLinks bool
	if err := tx.QueryRow(ctx, countLinks, id).Scan(&live, &hasLinks); err != nil {
		return fmt.Errorf("count domain links: %w", err)
	}
	if live > 0 {
		return problem.With(ErrHasLinks, "the domain still has %d links; delete them first", live)
	}
	stmt := purgeDomain
	if hasLinks {
		stmt = softDeleteDomain
	}
	if _, err := tx.Exec(ctx, stmt, id); err != nil {
		return fmt.Errorf("delete domain: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("delete domain: %w", err)
	}
	return nil
}

const domainState = `SELECT is_default, deleted_at IS NULL FROM domains WHERE host = $1`

// whyNot explains why a live, non-default domain with host was not found to change:
// ErrDefaultDomain or ErrNotFound.
func (s *Store) whyNot(ctx context.Context, host string) error {
	var def, live bool
	err := s.pool.QueryRow(ctx, domainState, host).Scan(&def, &live)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("read domain: %w", err)
	case def:
		return ErrDefaultDomain
	}
	return ErrNotFound
}

// syncDefault makes the stored default domain match the configuration.
const syncDefault = `UPDATE domains SET host = $1, base_url = $2, updated_at = now()
WHERE is_default AND (host <> $1 OR base_url <> $2)`

// SyncDefault stores the configured host and base URL of the default domain. A live
// or removed branded domain with that host is an error: the operator must remove it
// (or pick another HOP_BASE_URL), since one host cannot name two domains.
func (s *Store) SyncDefault(ctx context.Context, host, baseURL string) error {
	_, err := s.pool.Exec(ctx, syncDefault, host, baseURL)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("HOP_BASE_URL's host %q is a branded domain already (hop domain list); remove it first or use another base URL", host)
	}
	if err != nil {
		return fmt.Errorf("sync default domain: %w", err)
	}
	return nil
}
