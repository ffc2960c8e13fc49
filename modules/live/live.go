// Package live streams clicks as they happen over Server-Sent Events. Its Feed tails
// click_logs, which every ingest path (the Redis stream and the local click log) ends
// in, by a commit-safe cursor, and wakes on the hop_clicks notification PostgreSQL
// delivers after each ingest commit, so a click answered by any instance reaches the
// clients of every instance, in both modes.
package live

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hop-dev/hop/internal/horizon"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes the feed; zero values take the defaults.
type Config struct {
	// Heartbeat is the interval of the keep-alive comment (default 15s).
	Heartbeat time.Duration
	// Buffer is how many recent events the feed keeps for its clients, shared by all
	// of them; a client that falls this far behind is cut off (default 4096).
	Buffer int
	// Resume is how far back Last-Event-ID may reach (default 10m).
	Resume time.Duration
	// Poll is the longest wait between two reads when no notification comes (default 1s).
	Poll time.Duration
	// WriteTimeout bounds one write to a client (default 10s).
	WriteTimeout time.Duration
	// Page is how many clicks one read takes (default 1000).
	Page int
	// Coalesce is the shortest time between two reads (default 100ms): notifications
	// that arrive meanwhile are served by one read, so under load each client gets
	// one write per interval carrying every click since, not one per ingest commit.
	Coalesce time.Duration
}

func (c *Config) defaults() {
	c.Heartbeat = cmp.Or(c.Heartbeat, 15*time.Second)
	c.Buffer = cmp.Or(c.Buffer, 4096)
	c.Resume = cmp.Or(c.Resume, 10*time.Minute)
	c.Poll = cmp.Or(c.Poll, time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 10*time.Second)
	c.Page = cmp.Or(c.Page, 1000)
	c.Coalesce = cmp.Or(c.Coalesce, 100*time.Millisecond)
}

// click is one event, framed once and shared by every client that receives it. The
// frames of one read sit back to back in one block, so a client that takes a run of
// them writes the block's bytes as they are: no copy and no allocation per client.
type click struct {
	pos    horizon.Position
	linkID int64
	domain string // the link's domain host
	bot    bool
	block  []byte // the frames of every click of the read that returned this one
	off    int    // this click's frame is block[off:end]:
	end    int    // "event: click\nid: …\ndata: …\n\n"
}

// frame returns the click's event as written to a client.
func (c *click) frame() []byte { return c.block[c.off:c.end] }

// clickJSON is the data of a click event: never the IP or the visitor hash.
type clickJSON struct {
	ID        uuid.UUID `json:"id"`
	Slug      string    `json:"slug"`
	Domain    string    `json:"domain"`
	ClickedAt time.Time `json:"clicked_at"`
	Country   string    `json:"country"`
	Referer   string    `json:"referer"`
	Browser   string    `json:"browser"`
	OS        string    `json:"os"`
	Device    string    `json:"device"`
	Bot       bool      `json:"bot"`
	BotReason string    `json:"bot_reason"`
}

// filter selects the clicks one client receives.
type filter struct {
	linkID int64  // 0: every link
	domain string // "": every domain
	bots   bool
}

func (f filter) match(c *click) bool {
	return (f.linkID == 0 || c.linkID == f.linkID) && (f.domain == "" || c.domain == f.domain) && (f.bots || !c.bot)
}

// sub is one connected client: where it is in the feed's ring of recent events.
// Clients share the ring, so a client costs the same memory however far behind it is;
// one that falls a whole ring behind is cut off.
type sub struct {
	f    filter
	next uint64 // sequence number of the next event to look at
	// after: events at or before it are skipped. A client may resume from a click
	// this feed has not published yet (another instance's feed was ahead, or this one
	// has yet to read it); it must not get that click, or older ones, again.
	after horizon.Position
}

// Feed tails click_logs and fans clicks out to subscribed clients.
type Feed struct {
	cfg    Config
	pool   *pgxpool.Pool
	logger *slog.Logger

	wake     chan struct{}
	notified atomic.Uint64 // the highest xid a notification said committed clicks

	mu      sync.Mutex
	pos     horizon.Position // every click at or before pos has been published
	started bool
	stopped bool
	ring    []*click      // recent events; event number i is at ring[i%len(ring)]
	head    uint64        // number of events published so far
	changed chan struct{} // closed (and replaced) when events are published or the feed stops
	subs    int
	onWake  []func()
	ready   chan struct{}

	slugMu    sync.Mutex
	slugCache map[int64]linkName // link id -> slug and domain

	clients prometheus.Gauge
	cuts    prometheus.Counter
	events  prometheus.Counter
}

// New returns a feed; Run tails the database.
func New(cfg Config, pool *pgxpool.Pool, reg prometheus.Registerer, logger *slog.Logger) (*Feed, error) {
	cfg.defaults()
	// One read publishes up to Page events at once: a smaller ring would cut off
	// clients that keep up.
	if cfg.Page < 1 || cfg.Buffer < cfg.Page {
		return nil, fmt.Errorf("live: Page %d must be positive and Buffer %d at least Page", cfg.Page, cfg.Buffer)
	}
	f := &Feed{
		cfg: cfg, pool: pool, logger: logger.With("module", "live"),
		wake: make(chan struct{}, 1), ready: make(chan struct{}),
		ring: make([]*click, cfg.Buffer), changed: make(chan struct{}), slugCache: map[int64]linkName{},
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hop_live_clients", Help: "Clients connected to the live click feed."}),
		cuts:    prometheus.NewCounter(prometheus.CounterOpts{Name: "hop_live_clients_cut_total", Help: "Live clients disconnected because they fell a whole ring of recent events behind."}),
		events:  prometheus.NewCounter(prometheus.CounterOpts{Name: "hop_live_events_total", Help: "Clicks read by the live feed."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{f.clients, f.cuts, f.events} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("live: register metrics: %w", err)
			}
		}
	}
	return f, nil
}

// OnWake registers fn to be called whenever clicks may have been committed (a
// notification arrived, or the poll interval passed). Call before Run.
func (f *Feed) OnWake(fn func()) { f.onWake = append(f.onWake, fn) }

// Run tails click_logs until ctx ends.
func (f *Feed) Run(ctx context.Context) error {
	go f.listen(ctx)
	poll := time.NewTicker(f.cfg.Poll)
	defer poll.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	pace := time.NewTimer(0)
	defer pace.Stop()
	behind := time.Duration(0)
	var last time.Time
	for {
		// Leading edge: a click after a quiet spell is read at once; under load, reads
		// come at most once per Coalesce, and every notification in between is served
		// by the next one. Fewer reads mean fewer wake-ups and writes per client.
		if wait := f.cfg.Coalesce - time.Since(last); wait > 0 {
			pace.Reset(wait)
			select {
			case <-ctx.Done():
				f.closeAll()
				return nil
			case <-pace.C:
			}
		}
		select {
		case <-f.wake: // the read below covers it
		default:
		}
		last = time.Now()
		moved, err := f.runOnce(ctx)
		if err != nil && ctx.Err() == nil {
			f.logger.Warn("reading new clicks failed", "error", err)
		}
		if moved {
			for _, fn := range f.onWake {
				fn()
			}
		}
		// Committed clicks are still above the horizon while an older transaction
		// (an aggregator tick, say) is open: look again soon, backing off to the poll.
		f.mu.Lock()
		held := f.started && f.notified.Load() >= f.pos.XID
		f.mu.Unlock()
		if held {
			behind = min(max(2*behind, 10*time.Millisecond), f.cfg.Poll)
			retry.Reset(behind)
		} else {
			behind = 0
		}
		select {
		case <-ctx.Done():
			f.closeAll()
			return nil
		case <-f.wake:
		case <-retry.C:
		case <-poll.C:
			for _, fn := range f.onWake {
				fn()
			}
		}
	}
}

// listen holds one connection that LISTENs to hop_clicks and turns notifications into
// wake-ups. After a lost connection it wakes once, since notifications were missed.
func (f *Feed) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := f.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		f.logger.Warn("listening for clicks failed; polling until it works again", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (f *Feed) listenOnce(ctx context.Context) error {
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN hop_clicks"); err != nil {
		conn.Conn().Close(context.Background()) //nolint:errcheck // the pool drops it
		return fmt.Errorf("listen: %w", err)
	}
	f.signal()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			// The connection still listens; never give it back to the pool like that.
			conn.Conn().Close(context.Background()) //nolint:errcheck // the pool drops it
			return fmt.Errorf("wait for notification: %w", err)
		}
		if x, err := horizon.ParseXID(n.Payload); err == nil {
			for old := f.notified.Load(); x > old && !f.notified.CompareAndSwap(old, x); old = f.notified.Load() {
			}
		}
		f.signal()
	}
}

func (f *Feed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
	for _, fn := range f.onWake {
		fn()
	}
}

// frameGuess is a generous size of one framed click event, for sizing a read's block.
const frameGuess = 512

// readSQL reads clicks after a position and below the horizon, in position order.
// $4/$5 optionally narrow to one link and to human clicks. Slugs come from the slug
// cache, not a join: the read touches click_logs only. The link test is wrapped in IS
// TRUE so that it is never an index condition: planned with a link id and no
// statistics, PostgreSQL also read the link's whole history from click_logs' unique
// key and intersected it with the window (32 ms against 1.3 ms for a link with 500,000
// clicks, growing with them).
const readSQL = `
SELECT c.xid::text, c.event_id, c.link_id, c.clicked_at, c.country, c.referer_host,
       c.browser, c.os, c.device, c.is_bot, c.bot_reason
FROM click_logs c
WHERE c.xid >= $1::text::xid8 AND (c.xid, c.event_id) > ($1::text::xid8, $2::uuid)
  AND c.xid < $3::text::xid8
  AND ($4::bigint = 0 OR (c.link_id = $4) IS TRUE) AND ($5 OR NOT c.is_bot)
ORDER BY c.xid, c.event_id
LIMIT $6`

const slugsSQL = `SELECT l.id, l.slug, d.host FROM links l JOIN domains d ON d.id = l.domain_id WHERE l.id = ANY($1)`

// maxSlugs bounds the slug cache; past it the cache starts over.
const maxSlugs = 100_000

// slugs returns the slugs of ids, from the cache or, for ids it lacks, PostgreSQL. A
// link's slug never changes, so a cached one is never stale.
// linkName is how a click names its link: slug and domain host (a slug is unique per
// domain only).
type linkName struct{ slug, domain string }

func (f *Feed) slugs(ctx context.Context, ids []int64) (map[int64]linkName, error) {
	f.slugMu.Lock()
	defer f.slugMu.Unlock()
	if len(f.slugCache)+len(ids) > maxSlugs {
		f.slugCache = map[int64]linkName{}
	}
	var missing []int64
	for _, id := range ids {
		if _, ok := f.slugCache[id]; !ok && !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		rows, err := f.pool.Query(ctx, slugsSQL, missing)
		if err != nil {
			return nil, fmt.Errorf("read slugs: %w", err)
		}
		for rows.Next() {
			var (
				id int64
				n  linkName
			)
			if err := rows.Scan(&id, &n.slug, &n.domain); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read slugs: %w", err)
			}
			f.slugCache[id] = n
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read slugs: %w", err)
		}
	}
	return f.slugCache, nil
}

// read returns up to Page clicks in (from, below-horizon) that pass fl's link and bot
// tests; its domain is the caller's to test.
func (f *Feed) read(ctx context.Context, from horizon.Position, below uint64, fl filter) ([]*click, error) {
	rows, err := f.pool.Query(ctx, readSQL, horizon.FormatXID(from.XID), from.Event,
		horizon.FormatXID(below), fl.linkID, fl.bots, f.cfg.Page)
	if err != nil {
		return nil, fmt.Errorf("read clicks: %w", err)
	}
	type row struct {
		xid    uint64
		linkID int64
		j      clickJSON
	}
	read := make([]row, 0, f.cfg.Page) // a page under load: no regrowth
	for rows.Next() {
		var xid string
		read = append(read, row{})
		r := &read[len(read)-1] // scanned in place: no row of its own on the heap
		if err := rows.Scan(&xid, &r.j.ID, &r.linkID, &r.j.ClickedAt, &r.j.Country, &r.j.Referer,
			&r.j.Browser, &r.j.OS, &r.j.Device, &r.j.Bot, &r.j.BotReason); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan click: %w", err)
		}
		if r.xid, err = horizon.ParseXID(xid); err != nil {
			rows.Close()
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read clicks: %w", err)
	}
	if len(read) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(read))
	for i, r := range read {
		ids[i] = r.linkID
	}
	slugs, err := f.slugs(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*click, len(read))
	all := make([]click, len(read)) // one allocation for the read's clicks
	f.slugMu.Lock()
	defer f.slugMu.Unlock()
	// The frames are encoded straight into the block, sized for a typical frame, so
	// a read allocates it about once instead of regrowing it frame by frame.
	var blk bytes.Buffer
	blk.Grow(len(read) * frameGuess)
	enc := json.NewEncoder(&blk)
	for i, r := range read {
		j := r.j
		n := slugs[r.linkID]
		j.Slug, j.Domain = n.slug, n.domain
		j.ClickedAt = j.ClickedAt.UTC()
		off := blk.Len()
		blk.WriteString("event: click\nid: ")
		blk.WriteString(j.ID.String())
		blk.WriteString("\ndata: ")
		if err := enc.Encode(j); err != nil { // ends the line with "\n"
			return nil, fmt.Errorf("encode click: %w", err)
		}
		blk.WriteByte('\n')
		all[i] = click{pos: horizon.Position{XID: r.xid, Event: j.ID}, linkID: r.linkID, domain: n.domain, bot: j.Bot, off: off, end: blk.Len()}
		out[i] = &all[i]
	}
	block := blk.Bytes()
	block = slices.Clip(block)
	for _, c := range out {
		c.block = block
	}
	return out, nil
}

// runOnce publishes every click committed since the last call and reports whether
// the feed moved on over any (clicks may have been committed). With no client
// connected it only moves its position, reading nothing.
func (f *Feed) runOnce(ctx context.Context) (moved bool, err error) {
	for {
		h, err := horizon.Read(ctx, f.pool)
		if err != nil {
			return moved, err
		}
		f.mu.Lock()
		from, started := f.pos, f.started
		if started && f.subs == 0 && from.Less(horizon.Position{XID: h}) {
			// Nobody is listening: move on without reading. A client that connects
			// later starts from here, and one that resumes reads its clicks from the
			// database; decided under the lock, so no subscriber misses a click.
			f.pos = horizon.Position{XID: h}
			f.mu.Unlock()
			return true, nil
		}
		f.mu.Unlock()
		if !started {
			// Live clients start from now; older clicks are read per client on resume.
			f.mu.Lock()
			f.pos, f.started = horizon.Position{XID: h}, true
			f.mu.Unlock()
			close(f.ready)
			return false, nil
		}
		if from.Reached(h) {
			return moved, nil
		}
		clicks, err := f.read(ctx, from, h, filter{bots: true})
		if err != nil {
			return moved, err
		}
		moved = moved || len(clicks) > 0
		end := horizon.Position{XID: h}
		if len(clicks) == f.cfg.Page {
			end = clicks[len(clicks)-1].pos
		}
		f.publish(clicks, end)
		f.events.Add(float64(len(clicks)))
		if len(clicks) < f.cfg.Page {
			return moved, nil
		}
	}
}

// publish appends clicks to the ring and moves the feed to end, in one step under the
// lock, so a client registering in between sees each click once.
func (f *Feed) publish(clicks []*click, end horizon.Position) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range clicks {
		f.ring[f.head%uint64(len(f.ring))] = c
		f.head++
	}
	if f.pos.Less(end) {
		f.pos = end
	}
	if len(clicks) > 0 {
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

func (f *Feed) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	close(f.changed)
	f.changed = make(chan struct{})
}

// errCut means the client fell a whole ring behind.
var errCut = errors.New("live client fell too far behind")

// take returns up to max events for s that arrived since its last take, and a channel
// closed when more arrive. It fails with errCut when events s has not seen were
// overwritten, and errStopped once the feed has stopped.
func (f *Feed) take(s *sub, max int, out []*click) ([]*click, <-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return out, nil, errStopped
	}
	size := uint64(len(f.ring))
	if f.head > size && s.next < f.head-size {
		f.cuts.Inc()
		return out, nil, errCut
	}
	for ; s.next < f.head && len(out) < max; s.next++ {
		if c := f.ring[s.next%size]; s.f.match(c) && s.after.Less(c.pos) {
			out = append(out, c)
		}
	}
	return out, f.changed, nil
}

// errStopped means the feed is not running (yet, or any more).
var errStopped = errors.New("live feed is not running")

// subscribe registers a client. With from set, it first writes the clicks after from
// (through write) and registers only once it has caught up with the feed, so the
// client sees every click once and in order.
func (f *Feed) subscribe(ctx context.Context, fl filter, from *horizon.Position, write func(*click) error) (*sub, error) {
	select {
	case <-f.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s := &sub{f: fl}
	for {
		f.mu.Lock()
		cur := f.pos
		if from == nil || !from.Less(cur) {
			s.next = f.head
			if from != nil {
				s.after = *from
			}
			f.subs++
			f.clients.Inc()
			f.mu.Unlock()
			return s, nil
		}
		f.mu.Unlock()
		// Clicks in (from, cur] are final and published: read them from the database.
		// A page ends at cur, inclusive: read below cur.XID+1 and stop at cur.
		clicks, err := f.read(ctx, *from, cur.XID+1, fl)
		if err != nil {
			return nil, err
		}
		next := cur
		for _, c := range clicks {
			if cur.Less(c.pos) {
				break
			}
			if fl.match(c) { // the domain is tested here, not in SQL
				if err := write(c); err != nil {
					return nil, err
				}
			}
			next = c.pos
		}
		if len(clicks) < f.cfg.Page || cur.Less(clicks[len(clicks)-1].pos) {
			next = cur
		}
		from = &next
	}
}

func (f *Feed) unsubscribe(*sub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs--
	f.clients.Dec()
}

// resumeSQL finds a recent click by its event id. UUIDv7 ids carry their time, so the
// search is a narrow range of clicked_at (BRIN-indexed) rather than the whole table.
const resumeSQL = `
SELECT xid::text FROM click_logs
WHERE event_id = $1 AND clicked_at >= $2 AND clicked_at < $3 AND clicked_at >= $4`

// resumeFrom returns the position of the click with this id, if it is within the
// resume window; ok is false otherwise (the client then starts from now).
func (f *Feed) resumeFrom(ctx context.Context, id uuid.UUID, now time.Time) (horizon.Position, bool, error) {
	if id.Version() != 7 {
		return horizon.Position{}, false, nil
	}
	sec, nsec := id.Time().UnixTime()
	at := time.Unix(sec, nsec)
	var xid string
	err := f.pool.QueryRow(ctx, resumeSQL, id, at.Add(-time.Minute), at.Add(time.Minute), now.Add(-f.cfg.Resume)).Scan(&xid)
	if errors.Is(err, pgx.ErrNoRows) {
		return horizon.Position{}, false, nil
	}
	if err != nil {
		return horizon.Position{}, false, fmt.Errorf("find last event: %w", err)
	}
	x, err := horizon.ParseXID(xid)
	if err != nil {
		return horizon.Position{}, false, err
	}
	return horizon.Position{XID: x, Event: id}, true, nil
}
