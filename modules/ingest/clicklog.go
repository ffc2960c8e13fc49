package ingest

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tidwall/wal"
)

// logConfig tunes the local click log. Zero values take the defaults.
type logConfig struct {
	// Dir holds the log's segment files (set by New).
	Dir string
	// MaxBytes bounds the log on disk (set by New); past it appends fail.
	MaxBytes int64
	// SegmentBytes is the size of one segment file (default MaxBytes/8, between
	// 64 KiB and 4 MiB). The newest segment is held in memory.
	SegmentBytes int
	// ReopenInterval is the least time between two attempts to reopen a log whose
	// disk failed (default 1s; negative: none).
	ReopenInterval time.Duration
	// ShutdownTimeout bounds the final flush (set by New).
	ShutdownTimeout time.Duration
	// Gather is how long, while clicks arrive together, the batch being filled waits
	// from its first click for more before its fsync (default 300µs; negative: none),
	// as the hand-off does before an XADD.
	Gather time.Duration
}

func (c logConfig) withDefaults() logConfig {
	c.SegmentBytes = cmp.Or(c.SegmentBytes, int(min(max(c.MaxBytes/8, 64<<10), 4<<20)))
	c.ReopenInterval = cmp.Or(c.ReopenInterval, time.Second)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	c.Gather = cmp.Or(c.Gather, 300*time.Microsecond)
	return c
}

func (c logConfig) validate() error {
	switch {
	case c.Dir == "":
		return errors.New("ingest log: no directory")
	case c.MaxBytes < 1:
		return errors.New("ingest log: MaxBytes must be positive")
	case c.SegmentBytes < 1, c.ShutdownTimeout < 0:
		return errors.New("ingest log: SegmentBytes and intervals must be positive")
	}
	return nil
}

var (
	errLogFull   = errors.New("local click log full (HOP_SPOOL_MAX_BYTES)")
	errLogLocked = errors.New("another hop process uses this data directory")
)

// clickLog is the local durable click log: a tidwall/wal write-ahead log of entries,
// each a checksum and up to maxPerEntry encoded events. Appends are group-committed:
// every click waiting while one fsync runs shares the next, in one WriteBatch. Entries
// leave the log only by truncation from the front, once PostgreSQL has committed them.
type clickLog struct {
	cfg      logConfig
	m        *logMetrics
	logger   *slog.Logger
	lockFile *os.File // flock on Dir/LOCK: one process per log

	// Under mu: the open log (nil while broken), its size on disk, and when it was
	// last (re)opened. A failed write leaves tidwall/wal's memory unlike its file, so
	// the log is closed and reopened, cutting a torn tail, before the next write.
	mu       sync.RWMutex
	w        *wal.Log
	size     int64
	openErr  error
	openedAt time.Time

	// Group commit, as in handoff: running and the queue, under gmu.
	gmu     sync.Mutex
	running bool
	batchQueue
	bufs sync.Pool

	appended chan struct{} // a token after each commit, for the log reader
}

// walOptions: fsync on every WriteBatch (one per group commit), and a log that may be
// truncated to empty once everything is in PostgreSQL.
func (l *clickLog) walOptions() *wal.Options {
	return &wal.Options{
		SegmentSize:      l.cfg.SegmentBytes,
		SegmentCacheSize: 1,
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	}
}

func openClickLog(cfg logConfig, m *logMetrics, logger *slog.Logger) (*clickLog, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("local click log: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(cfg.Dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("local click log: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("local click log %s: %w", cfg.Dir, errLogLocked)
	}
	l := &clickLog{cfg: cfg, m: m, logger: logger, lockFile: lf,
		batchQueue: batchQueue{kick: make(chan struct{}, 1)}, appended: make(chan struct{}, 1)}
	l.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	l.mu.Lock()
	err = l.reopenLocked()
	l.mu.Unlock()
	if err != nil {
		lf.Close()
		return nil, err
	}
	return l, nil
}

// reopenLocked (re)opens the log after cutting a torn tail. l.mu is held.
func (l *clickLog) reopenLocked() error {
	if l.w != nil {
		_ = l.w.Close() // best effort: the file is reread from disk below
		l.w = nil
	}
	l.openedAt = time.Now()
	if err := repairTail(l.cfg.Dir, l.logger); err != nil {
		l.openErr = fmt.Errorf("local click log: %w", err)
		return l.openErr
	}
	w, err := wal.Open(l.cfg.Dir, l.walOptions())
	if err != nil {
		l.openErr = fmt.Errorf("open local click log %s: %w", l.cfg.Dir, err)
		return l.openErr
	}
	l.w, l.openErr = w, nil
	l.size = dirSize(l.cfg.Dir)
	return nil
}

// broken returns why the log cannot be written, or nil.
func (l *clickLog) broken() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.openErr
}

// usage is the log's size on disk and its entry count.
func (l *clickLog) usage() (bytes int64, entries uint64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.w == nil {
		return l.size, 0
	}
	first, _ := l.w.FirstIndex()
	last, _ := l.w.LastIndex()
	if last >= first {
		entries = last - first + 1
	}
	return l.size, entries
}

// append puts ev in the log and returns once it is fsync'd: in the batch being
// filled while Run is running, else with a write of its own.
func (l *clickLog) append(ev *Event) error {
	l.gmu.Lock()
	if !l.running {
		l.gmu.Unlock()
		b := l.newBatch()
		*b.entry = appendEvent(*b.entry, ev)
		b.n = 1
		l.commit([]*batch{b})
		return b.err
	}
	if l.filling == nil {
		l.filling = l.newBatch()
	}
	b, kick := l.joinLocked(ev)
	l.gmu.Unlock()
	if kick {
		l.wake()
	}
	<-b.done
	return b.err
}

// appendEntries puts stream entries (encoded clicks, as the hand-off XADDs them) in
// the log as entries of their own, with one write and fsync, and returns once they are
// durable. It fails if any could not be written.
func (l *clickLog) appendEntries(entries [][]byte) error {
	bs := make([]*batch, 0, len(entries))
	for _, e := range entries {
		b := l.newBatch()
		*b.entry = append(*b.entry, e...)
		bs = append(bs, b)
	}
	l.commit(bs)
	var errs []error
	for _, b := range bs {
		if b.err != nil {
			errs = append(errs, b.err)
		}
	}
	return errors.Join(errs...)
}

// newBatch starts an entry with room for its checksum.
func (l *clickLog) newBatch() *batch {
	bp := l.bufs.Get().(*[]byte)
	*bp = append((*bp)[:0], 0, 0, 0, 0)
	return &batch{entry: bp, since: time.Now(), done: make(chan struct{})}
}

// Run commits batches until ctx ends, then the batches already joined.
func (l *clickLog) Run(ctx context.Context) error {
	l.gmu.Lock()
	l.running = true
	l.gmu.Unlock()
	var bs []*batch
	gather := false
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			l.gmu.Lock()
			l.running = false
			bs = l.takeLocked(bs[:0])
			l.gmu.Unlock()
			l.commit(bs) // no one joins a batch any more: this is the last
			return nil
		case <-l.kick:
		}
		if gather {
			l.gatherFor(ctx, timer)
		}
		l.gmu.Lock()
		bs = l.takeLocked(bs[:0])
		l.gmu.Unlock()
		n := 0
		for _, b := range bs {
			n += b.n
		}
		gather = n > 1 && l.cfg.Gather > 0 // clicks arrive together: let the next batch fill
		if len(bs) > 0 {
			l.commit(bs)
		}
	}
}

// gatherFor waits until the batch being filled is cfg.Gather old, a batch is full,
// or ctx ends.
func (l *clickLog) gatherFor(ctx context.Context, timer *time.Timer) {
	l.gmu.Lock()
	wait := l.gatherLeftLocked(l.cfg.Gather)
	l.gmu.Unlock()
	if wait <= 0 {
		return
	}
	timer.Reset(wait)
	select {
	case <-timer.C:
	case <-l.kick:
	case <-ctx.Done():
	}
	timer.Stop()
}

// takeLocked moves every waiting batch, full ones first, to bs. l.gmu is held.
func (l *clickLog) takeLocked(bs []*batch) []*batch {
	bs = append(bs, l.full...)
	clear(l.full)
	l.full = l.full[:0]
	if l.filling != nil {
		bs = append(bs, l.filling)
		l.filling = nil
	}
	return bs
}

// commit writes batches as consecutive entries with one fsync and answers each. A
// batch that would take the log past MaxBytes fails with errLogFull.
func (l *clickLog) commit(bs []*batch) {
	if len(bs) == 0 {
		return
	}
	defer func() {
		for _, b := range bs {
			close(b.done)
			*b.entry = (*b.entry)[:0]
			l.bufs.Put(b.entry)
			b.entry = nil
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		if time.Since(l.openedAt) < l.cfg.ReopenInterval || l.reopenLocked() != nil {
			for _, b := range bs {
				b.err = l.openErr
			}
			return
		}
		l.logger.Info("local click log writable again", "dir", l.cfg.Dir)
	}
	last, err := l.w.LastIndex()
	if err != nil {
		l.failLocked(bs, err)
		return
	}
	var wb wal.Batch
	var added int64
	var written []*batch
	for _, b := range bs {
		sealLogEntry(*b.entry)
		size := int64(len(*b.entry) + uvarintLen(uint64(len(*b.entry))))
		if l.size+added+size > l.cfg.MaxBytes {
			b.err = errLogFull
			continue
		}
		last++
		wb.Write(last, *b.entry)
		added += size
		written = append(written, b)
	}
	if len(written) == 0 {
		return
	}
	if err := l.w.WriteBatch(&wb); err != nil {
		l.failLocked(written, err)
		return
	}
	l.size += added
	l.m.fsyncs.Inc()
	l.m.entries.Add(float64(len(written)))
	select {
	case l.appended <- struct{}{}:
	default:
	}
}

// failLocked answers bs with err and closes the log, so the next commit reopens it
// from what is on disk. l.mu is held.
func (l *clickLog) failLocked(bs []*batch, err error) {
	err = fmt.Errorf("write local click log: %w", err)
	for _, b := range bs {
		if b.err == nil {
			b.err = err
		}
	}
	l.logger.Error("local click log write failed; clicks that Redis cannot take are dropped until it works again", "error", err)
	_ = l.w.Close()
	l.w, l.openErr, l.openedAt = nil, err, time.Now()
}

// bounds returns the first and last index in the log; ok is false while it is
// broken. An empty log has last == first-1.
func (l *clickLog) bounds() (first, last uint64, ok bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.w == nil {
		return 0, 0, false
	}
	first, err1 := l.w.FirstIndex()
	last, err2 := l.w.LastIndex()
	return first, last, err1 == nil && err2 == nil
}

// read appends to dst the events of the entries from index from on, stopping after
// the entry that brings them to maxClicks or at the end of the log. It returns the
// index after the last entry read and the number of undecodable entries skipped.
func (l *clickLog) read(from uint64, maxClicks int, dst []Event) (events []Event, next uint64, bad int, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.w == nil {
		return dst, from, 0, l.openErr
	}
	last, err := l.w.LastIndex()
	if err != nil {
		return dst, from, 0, err
	}
	next = from
	for ; next <= last && len(dst) < maxClicks; next++ {
		data, err := l.w.Read(next)
		if err != nil {
			return dst, next, bad, fmt.Errorf("read local click log entry %d: %w", next, err)
		}
		body, ok := openLogEntry(data)
		if !ok {
			bad++
			continue
		}
		if dst, err = appendEvents(dst, body); err != nil {
			bad++
		}
	}
	return dst, next, bad, nil
}

// truncate removes the entries up to and including upTo.
func (l *clickLog) truncate(upTo uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	first, err := l.w.FirstIndex()
	if err != nil || upTo < first {
		return err
	}
	if err := l.w.TruncateFront(upTo + 1); err != nil {
		l.failLocked(nil, err)
		return fmt.Errorf("truncate local click log: %w", err)
	}
	l.size = dirSize(l.cfg.Dir)
	return nil
}

// close closes the log and releases its lock.
func (l *clickLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if l.w != nil {
		err = l.w.Close()
		l.w = nil
	}
	if l.openErr == nil {
		l.openErr = errors.New("local click log closed")
	}
	if l.lockFile != nil {
		l.lockFile.Close()
		l.lockFile = nil
	}
	return err
}

// repairTail cuts an incomplete last entry off the newest segment, as a crash in the
// middle of a write or a full disk leaves it; tidwall/wal refuses to open such a log
// (upstream issue tidwall/wal#21). A segment is entries of a uvarint length and that
// many bytes. The entry was never fsync'd as a whole, so no click it held was
// answered.
func repairTail(dir string, logger *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var newest string
	for _, e := range entries {
		name := e.Name()
		if len(name) != 20 || e.IsDir() {
			continue
		}
		if _, err := strconv.ParseUint(name, 10, 64); err == nil && name > newest {
			newest = name
		}
	}
	if newest == "" {
		return nil
	}
	path := filepath.Join(dir, newest)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	good := 0
	for good < len(data) {
		size, n := binary.Uvarint(data[good:])
		if n <= 0 || uint64(len(data)-good-n) < size {
			break
		}
		good += n + int(size)
	}
	if good == len(data) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(int64(good)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	logger.Warn("local click log: cut an incomplete last entry (left by a crash or a full disk)", "segment", path, "bytes", len(data)-good)
	return nil
}

// dirSize is the bytes of the files in dir.
func dirSize(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
	}
	return n
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
