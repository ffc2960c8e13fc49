package ingest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// groupName is the consumer group every hop instance reads the click stream with.
const groupName = "hop-ingest"

// stream is what the stream services share: the key, this instance's name in the
// group, the writer, and processing of entries read or claimed.
type stream struct {
	rdb       rueidis.Client
	key       string
	name      string
	batchSize int
	w         *writer
	ledger    *ledger
	m         *streamMetrics
	pm        *pipelineMetrics
	logger    *slog.Logger

	lastBatch atomic.Int64 // unix nanos of the last committed batch

	// busy is held by the reader and the claimer while they read and process a batch,
	// so the claimer never takes over entries the reader of this very instance holds.
	busy sync.Mutex

	// epochKey holds the stream's incarnation: a token set with each new consumer
	// group (see groupScript). epoch is the token this instance last saw, "" before
	// the first look; a different one means Redis lost the stream meanwhile, even
	// when another instance recreated the group before this one's reader noticed.
	epochKey string
	group    *rueidis.Lua // groupScript
	epochMu  sync.Mutex
	epoch    string
	looked   atomic.Bool // ensureGroup has run

	// perEntry is the number of events per stream entry seen in the last batch
	// (group commit puts up to maxPerEntry in one). Reads ask for BatchSize/perEntry
	// entries, so a batch holds about BatchSize events, not BatchSize entries: it
	// starts at the maximum, so the first read after a restart is bounded too.
	perEntry atomic.Int64
}

func newStream(rdb rueidis.Client, key, name string, batchSize int, w *writer, led *ledger, m *streamMetrics, pm *pipelineMetrics, logger *slog.Logger) *stream {
	if name == "" {
		host, _ := os.Hostname() // "" on error
		name = cmp.Or(host, "hop")
	}
	s := &stream{rdb: rdb, key: key, name: name, batchSize: cmp.Or(batchSize, defaultBatchSize), w: w, ledger: led, m: m, pm: pm,
		logger: logger.With("consumer", name), epochKey: key + ":epoch",
		group: rueidis.NewLuaScript(groupScript)}
	s.perEntry.Store(maxPerEntry)
	return s
}

// A read is bounded whatever its entries hold: count never asks for more entries than
// readFactor×BatchSize clicks would fill if every entry were full, nor, when that is
// fewer, for more than minReadEntries (or BatchSize). Without the bound, a quiet spell
// (one click per entry) followed by a burst of full entries would read BatchSize full
// entries at once.
const (
	readFactor     = 4
	minReadEntries = 128
)

// count is how many entries to read or claim for a batch of about BatchSize events.
func (s *stream) count() int64 {
	batch := int64(s.batchSize)
	limit := max(1, min(batch, minReadEntries), readFactor*batch/maxPerEntry)
	return min(limit, max(1, batch/max(1, s.perEntry.Load())))
}

// groupScript creates the consumer group at the stream's start (KEYS[1], the group
// ARGV[1]) and with it a new epoch token (KEYS[2] := ARGV[2]), in one step: no
// instance can see the new group under the old token. When the group exists it
// returns the current token, setting one for a stream from before epochs. (One script
// over two keys: hop runs on one Redis, not a cluster.)
const groupScript = `
local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(r) == 'table' and r.err then
  if string.sub(r.err, 1, 9) ~= 'BUSYGROUP' then return r end
  local e = redis.call('GET', KEYS[2])
  if e then return {0, e} end
  redis.call('SET', KEYS[2], ARGV[2])
  return {0, ARGV[2]}
end
redis.call('SET', KEYS[2], ARGV[2])
return {1, ARGV[2]}`

// groupLook is what ensureGroup found.
type groupLook int

const (
	// sameStream: the group exists under the epoch this instance saw before (or it
	// is this instance's first look, and the group was there, or another of this
	// instance's loops saw the new epoch first and reported it).
	sameStream groupLook = iota
	// createdAtFirstLook: no group on this instance's first look. The stream may have
	// been lost while this instance was away, or never have existed.
	createdAtFirstLook
	// streamMadeAnew: the epoch differs from the one this instance saw: Redis lost the
	// stream since, whoever recreated the group.
	streamMadeAnew
)

// ensureGroup creates the group at the stream's start, so entries added before it
// existed (or after Redis came back empty) are all read, and reports what it found.
// Of this instance's callers (the reader, the trimmer) only the first to see a new
// epoch gets streamMadeAnew, so a reset is reported once.
func (s *stream) ensureGroup(ctx context.Context) (groupLook, error) {
	arr, err := s.group.Exec(ctx, s.rdb, []string{s.key, s.epochKey}, []string{groupName, newEpochToken()}).ToArray()
	if err != nil {
		return sameStream, fmt.Errorf("create consumer group: %w", err)
	}
	if len(arr) != 2 {
		return sameStream, errors.New("create consumer group: want {created, epoch} reply")
	}
	created, err := arr[0].AsInt64()
	if err != nil {
		return sameStream, fmt.Errorf("create consumer group: %w", err)
	}
	tok, err := arr[1].ToString()
	if err != nil {
		return sameStream, fmt.Errorf("create consumer group: %w", err)
	}
	firstLook := !s.looked.Swap(true)
	switch {
	case s.sawEpoch(tok):
		return streamMadeAnew, nil
	case firstLook && created == 1:
		return createdAtFirstLook, nil
	}
	return sameStream, nil
}

// newEpochToken is a token no earlier incarnation of the stream had.
func newEpochToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// sawEpoch records tok as the epoch seen and reports whether it replaces a different
// one: Redis lost the stream since this instance last looked. Only the first of this
// instance's loops to see a new epoch gets true.
func (s *stream) sawEpoch(tok string) bool {
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	prev := s.epoch
	s.epoch = tok
	return prev != "" && prev != tok
}

// seenEpoch is the epoch this instance saw last.
func (s *stream) seenEpoch() string {
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	return s.epoch
}

// currentEpoch reads the stream's epoch token; "" when there is none (Redis lost the
// stream and no group has been made since).
func (s *stream) currentEpoch(ctx context.Context) (string, error) {
	tok, err := s.rdb.Do(ctx, s.rdb.B().Get().Key(s.epochKey).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read stream epoch: %w", err)
	}
	return tok, nil
}

// isNoGroup reports that the group is gone: NOGROUP, or UNBLOCKED when the stream
// was deleted under a blocked XREADGROUP.
func isNoGroup(err error) bool {
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "NOGROUP") || strings.HasPrefix(msg, "UNBLOCKED")
}

// isNoStream reports that XINFO found no stream at the key.
func isNoStream(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && strings.Contains(re.Error(), "no such key")
}

// read returns up to count() entries after id: ">" for new entries (blocking up to
// block), or an ID to page through this consumer's own pending entries.
func (s *stream) read(ctx context.Context, id string, block time.Duration) ([]rueidis.XRangeEntry, error) {
	b := s.rdb.B().Xreadgroup().Group(groupName, s.name).Count(s.count())
	var cmd rueidis.Completed
	if id == ">" {
		cmd = b.Block(block.Milliseconds()).Streams().Key(s.key).Id(id).Build()
	} else {
		cmd = b.Streams().Key(s.key).Id(id).Build()
	}
	res, err := s.rdb.Do(ctx, cmd).AsXRead()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read click stream: %w", err)
	}
	return res[s.key], nil
}

// process writes entries to click_logs, retrying with backoff while PostgreSQL fails,
// then acknowledges them. It reports false if ctx ended before the batch was
// committed; the entries then stay pending and are read again later.
func (s *stream) process(ctx context.Context, entries []rueidis.XRangeEntry, cfg retryConfig) bool {
	if len(entries) == 0 {
		return true
	}
	ids := make([]string, 0, len(entries))
	// Sized for the events the last batch carried per entry, so it rarely grows.
	events := make([]Event, 0, len(entries)*int(max(1, s.perEntry.Load())))
	for _, e := range entries {
		ids = append(ids, e.ID)
		if e.FieldValues == nil {
			continue // deleted from the stream while pending: nothing to write
		}
		var err error
		start := len(events)
		if events, err = appendEvents(events, e.FieldValues[streamField]); err != nil {
			s.pm.undecodable.Inc()
			s.logger.Error("undecodable click stream entry acknowledged and skipped", "id", e.ID, "error", err)
		} else if u := e.FieldValues[campaignField]; u != "" {
			if err := applyCampaigns(events[start:], u); err != nil {
				// The clicks themselves decoded: they are stored, without campaigns.
				s.logger.Error("undecodable campaigns of a click stream entry ignored", "id", e.ID, "error", err)
			}
		}
	}
	s.perEntry.Store(max(1, (int64(len(events))+int64(len(entries))-1)/int64(len(entries))))
	bo := backoff{min: cfg.RetryMin, max: cfg.RetryMax}
	for {
		// An in-flight write is not cut short by shutdown: the batch in hand is
		// committed if PostgreSQL allows.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.WriteTimeout)
		err := s.w.write(wctx, events)
		cancel()
		if err == nil {
			break
		}
		s.logger.Warn("writing clicks failed, entries stay pending and are retried", "entries", len(events), "error", err)
		if ctx.Err() != nil || !sleep(ctx, bo.next()) {
			return false
		}
	}
	s.lastBatch.Store(time.Now().UnixNano())
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.rdb.Do(actx, s.rdb.B().Xack().Key(s.key).Group(groupName).Id(ids...).Build()).Error(); err != nil {
		// Committed but pending: a later claim replays them and the writer skips
		// the rows that exist.
		s.logger.Warn("acknowledging written clicks failed; they will be replayed idempotently", "entries", len(ids), "error", err)
	}
	return true
}

// lost handles a stream whose group vanished under a running reader: Redis restarted
// without persistence, or was flushed. It recreates the group and reports the reset.
func (s *stream) lost(ctx context.Context, cause error) error {
	look, err := s.ensureGroup(ctx)
	if err != nil {
		return err
	}
	s.noticed(ctx, look, cause.Error()) // sameStream: the trimmer saw it first, and reported
	return nil
}

// noticed reports what a look at the group found: a stream made anew, for sure; a
// group missing at this instance's first look, only if clicks it published are gone
// (the stream may never have existed).
func (s *stream) noticed(ctx context.Context, look groupLook, cause string) {
	switch look {
	case streamMadeAnew:
		s.reportReset(ctx, cause, true)
	case createdAtFirstLook:
		s.reportReset(ctx, "consumer group missing at start", false)
	}
}

// reportReset counts a reset and logs at ERROR how many clicks this instance published
// that the group never delivered and that are not in the stream Redis has now. When
// not sure it was a reset (a group created at start), it reports only a loss.
func (s *stream) reportReset(ctx context.Context, cause string, sure bool) {
	// The records are taken before Redis is asked: each of their XADDs finished before
	// the question, so one that went into the stream Redis has now is in the answer.
	// Records added meanwhile are left for the next look.
	kept, gone, atLeast, err := s.ledger.lost(s.notInStream(ctx, s.ledger.snapshot()))
	if !sure && kept == 0 && gone == 0 {
		return
	}
	s.pm.resets.Inc()
	s.logger.Error("Redis lost the click stream (restarted without persistence, or flushed): clicks it held that were not yet read are gone, except those this instance still had",
		"estimated_clicks_lost", gone, "estimate_is_lower_bound", atLeast, "clicks_recovered", kept,
		"estimate", "clicks this instance published that the group never acknowledged and that it could not copy to its local click log",
		"recovered", "clicks this instance published that the group never acknowledged, copied from memory to its local click log",
		"cause", cause, "error", err)
}

// notInStream returns which of recs the stream Redis has now does not hold with the
// same ID and the same clicks. Entries below the stream's first one are not in it; the
// others are looked up one by one, since the ID alone does not tell: an entry XADDed
// in the same millisecond as a FLUSHALL gets an ID below those flushed, or even one of
// theirs. Should Redis not answer, all are taken as missing: a spilled click that was
// in the stream after all is still stored once (event_id).
func (s *stream) notInStream(ctx context.Context, recs []ledgerRec) map[streamID]bool {
	missing := make(map[streamID]bool, len(recs))
	for _, r := range recs {
		missing[r.id] = true
	}
	if len(recs) == 0 {
		return missing
	}
	res, err := s.rdb.Do(ctx, s.rdb.B().Xrange().Key(s.key).Start("-").End("+").Count(1).Build()).AsXRange()
	if err != nil || len(res) == 0 {
		return missing
	}
	first, ok := parseStreamID(res[0].ID)
	if !ok {
		return missing
	}
	var check []ledgerRec
	var cmds rueidis.Commands
	for _, r := range recs {
		if !r.id.less(first) {
			id := r.id.String()
			check = append(check, r)
			cmds = append(cmds, s.rdb.B().Xrange().Key(s.key).Start(id).End(id).Build())
		}
	}
	if len(cmds) == 0 {
		return missing
	}
	for i, resp := range s.rdb.DoMulti(ctx, cmds...) {
		es, err := resp.AsXRange()
		if err != nil {
			return missing
		}
		// Without payloads (no local log to spill to) the ID is all there is to go by.
		if len(es) == 1 && (check[i].payload == nil || es[0].FieldValues[streamField] == string(check[i].payload)) {
			delete(missing, check[i].id)
		}
	}
	return missing
}

// streamHealth is the stream as Redis reports it.
type streamHealth struct {
	length, pending, lag int64
	lastBatch            time.Time
}

// health reports the stream's length, this group's pending entries and lag, and when
// this instance last committed a batch. It also refreshes the matching metrics.
func (s *stream) health(ctx context.Context) (streamHealth, error) {
	h := streamHealth{lag: -1}
	if t := s.lastBatch.Load(); t != 0 {
		h.lastBatch = time.Unix(0, t)
	}
	n, err := s.rdb.Do(ctx, s.rdb.B().Xlen().Key(s.key).Build()).AsInt64()
	if err != nil {
		return h, fmt.Errorf("XLEN: %w", err)
	}
	h.length = n
	groups, err := s.groups(ctx)
	if err != nil {
		return h, err
	}
	for _, g := range groups {
		if g.name == groupName {
			h.pending, h.lag = g.pending, g.lag
		}
	}
	s.m.streamLength.Set(float64(h.length))
	s.m.pending.Set(float64(h.pending))
	s.m.lag.Set(float64(h.lag))
	return h, nil
}

// groupInfo is one row of XINFO GROUPS.
type groupInfo struct {
	name          string
	pending       int64
	lastDelivered string
	lag           int64 // -1 when Redis cannot tell
}

func (s *stream) groups(ctx context.Context) ([]groupInfo, error) {
	arr, err := s.rdb.Do(ctx, s.rdb.B().XinfoGroups().Key(s.key).Build()).ToArray()
	if isNoStream(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("XINFO GROUPS: %w", err)
	}
	out := make([]groupInfo, 0, len(arr))
	for _, g := range arr {
		m, err := g.AsMap()
		if err != nil {
			return nil, fmt.Errorf("XINFO GROUPS: %w", err)
		}
		gi := groupInfo{lag: -1}
		name, pending, last, lag := m["name"], m["pending"], m["last-delivered-id"], m["lag"]
		gi.name, _ = name.ToString()
		gi.pending, _ = pending.AsInt64()
		gi.lastDelivered, _ = last.ToString()
		if v, err := lag.AsInt64(); err == nil {
			gi.lag = v
		}
		out = append(out, gi)
	}
	return out, nil
}

// retryConfig bounds the retries of one batch write.
type retryConfig struct {
	RetryMin, RetryMax time.Duration
	WriteTimeout       time.Duration
}

func (c retryConfig) withDefaults() retryConfig {
	c.RetryMin = cmp.Or(c.RetryMin, 100*time.Millisecond)
	c.RetryMax = cmp.Or(c.RetryMax, 5*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 30*time.Second)
	return c
}

func (c retryConfig) validate() error {
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.WriteTimeout <= 0 {
		return errors.New("retry intervals must be positive and RetryMax >= RetryMin")
	}
	return nil
}

// readerConfig tunes the stream reader. Zero values take the defaults.
type readerConfig struct {
	retryConfig
	// Block is how long one XREADGROUP waits for new entries (default 1s).
	Block time.Duration
	// Linger is the least time between the starts of two batches when the first
	// emptied the stream (default 100ms; negative: none). Under steady traffic clicks
	// gather for that long and go to PostgreSQL in one transaction instead of dozens
	// of small ones; a full read (a backlog) is followed at once.
	Linger time.Duration
}

// streamReader moves new stream entries to click_logs: XREADGROUP, enrich, COPY,
// XACK. At start it first re-processes what this consumer read but did not
// acknowledge before it last stopped.
type streamReader struct {
	cfg readerConfig
	s   *stream
}

func newStreamReader(cfg readerConfig, s *stream) (*streamReader, error) {
	cfg.retryConfig = cfg.retryConfig.withDefaults()
	cfg.Block = cmp.Or(cfg.Block, time.Second)
	cfg.Linger = cmp.Or(cfg.Linger, 100*time.Millisecond)
	if err := cfg.retryConfig.validate(); err != nil {
		return nil, fmt.Errorf("ingest stream reader: %w", err)
	}
	if cfg.Block < time.Millisecond {
		return nil, fmt.Errorf("ingest stream reader: Block %s must be at least 1ms", cfg.Block)
	}
	return &streamReader{cfg: cfg, s: s}, nil
}

// Run reads until ctx ends. The batch in hand when ctx ends is still committed and
// acknowledged (or left pending for the next start).
func (r *streamReader) Run(ctx context.Context) error {
	bo := backoff{min: r.cfg.RetryMin, max: r.cfg.RetryMax}
	for {
		look, err := r.s.ensureGroup(ctx)
		if err == nil {
			r.s.noticed(ctx, look, "the stream was made anew since this instance last looked")
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		r.s.logger.Warn("cannot create consumer group, retrying", "error", err)
		if !sleep(ctx, bo.next()) {
			return nil
		}
	}
	if !r.readOwnPending(ctx) {
		return nil
	}
	bo.reset()
	var lingerUntil time.Time
	for ctx.Err() == nil {
		// Let a steady trickle gather into the next batch (see Linger).
		if wait := time.Until(lingerUntil); wait > 0 && !sleep(ctx, wait) {
			return nil
		}
		started := time.Now()
		n, drained, err := r.runOnce(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.s.logger.Warn("reading click stream failed, retrying", "error", err)
			spillUndelivered(r.s.ledger, r.s.logger) // Redis may be gone, with them
			sleep(ctx, bo.next())
			continue
		}
		bo.reset()
		lingerUntil = time.Time{}
		if n > 0 && drained {
			lingerUntil = started.Add(r.cfg.Linger)
		}
	}
	return nil
}

// runOnce reads and processes one batch of new entries and returns how many entries
// it took, and whether that emptied the stream (a read short of what it asked for).
// A vanished group is recreated (see stream.lost).
func (r *streamReader) runOnce(ctx context.Context) (n int, drained bool, err error) {
	r.s.busy.Lock()
	defer r.s.busy.Unlock()
	asked := r.s.count()
	entries, err := r.s.read(ctx, ">", r.cfg.Block)
	if err != nil {
		if isNoGroup(err) && ctx.Err() == nil {
			return 0, true, r.s.lost(ctx, err)
		}
		return 0, true, err
	}
	if !r.s.process(ctx, entries, r.cfg.retryConfig) {
		return 0, true, ctx.Err()
	}
	return len(entries), int64(len(entries)) < asked, nil
}

// readOwnPending re-processes what this consumer read but did not acknowledge before
// it last stopped. It reports false if ctx ended.
func (r *streamReader) readOwnPending(ctx context.Context) bool {
	bo := backoff{min: r.cfg.RetryMin, max: r.cfg.RetryMax}
	start := "0"
	for {
		entries, err := r.s.read(ctx, start, 0)
		switch {
		case ctx.Err() != nil:
			return false
		case isNoGroup(err):
			return true // a new group has nothing pending; runOnce recreates it
		case err != nil:
			r.s.logger.Warn("reading own pending clicks failed, retrying", "error", err)
			if !sleep(ctx, bo.next()) {
				return false
			}
			continue
		case len(entries) == 0:
			return true
		}
		if !r.s.process(ctx, entries, r.cfg.retryConfig) {
			return false
		}
		start = entries[len(entries)-1].ID
	}
}

// streamID is a Redis Stream entry ID, milliseconds-sequence.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	var id streamID
	var err error
	if id.ms, err = strconv.ParseUint(ms, 10, 64); err != nil {
		return id, false
	}
	if ok {
		if id.seq, err = strconv.ParseUint(seq, 10, 64); err != nil {
			return id, false
		}
	}
	return id, true
}

func (a streamID) less(b streamID) bool {
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq)
}

func (a streamID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}
