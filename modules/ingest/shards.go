package ingest

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
)

// logShards is the number of local click log shards. Parallel fsyncs of two files
// overlap on the disk, so a click that arrives while one shard's fsync runs commits
// at once in the other instead of waiting for that fsync and then its own.
const logShards = 2

// shardedLog is the local click log as logShards independent clickLogs, each with
// its own group commit, directory and log reader. A click is answered once its own
// shard has fsync'd it, as before; order across shards does not matter because the
// writer stores each event once by id.
type shardedLog []*clickLog

// openShardedLog opens the shards: the first in cfg.Dir (the layout of a single log,
// so its entries are read after an upgrade), the others in cfg.Dir.1 and on. Each
// takes an equal part of MaxBytes.
func openShardedLog(cfg logConfig, m *logMetrics, logger *slog.Logger) (shardedLog, error) {
	cfg.MaxBytes /= logShards
	s := make(shardedLog, 0, logShards)
	for i := range logShards {
		c := cfg
		if i > 0 {
			c.Dir = fmt.Sprintf("%s.%d", filepath.Clean(cfg.Dir), i)
		}
		l, err := openClickLog(c, m, logger)
		if err != nil {
			_ = s.close()
			return nil, err
		}
		s = append(s, l)
	}
	return s, nil
}

// pick returns the shard order to try for one click: an idle shard first (its commit
// starts at once), else the one whose commit started first (it is done soonest).
func (s shardedLog) pick() int {
	best, bestSince := 0, int64(-1)
	for i, l := range s {
		since := l.busySince.Load()
		if since == 0 {
			return i
		}
		if bestSince < 0 || since < bestSince {
			best, bestSince = i, since
		}
	}
	return best
}

// append puts ev in a shard and returns once it is fsync'd. A shard that is full or
// broken hands the click to the next; if none takes it, the first one's error says
// why.
func (s shardedLog) append(ev *Event) error {
	first := s.pick()
	var firstErr error
	for k := range s {
		err := s[(first+k)%len(s)].append(ev)
		if err == nil {
			return nil
		}
		firstErr = cmp.Or(firstErr, err)
	}
	return firstErr
}

// appendEntries puts stream entries in one shard with one fsync, or in the next if
// that one fails.
func (s shardedLog) appendEntries(entries [][]byte) error {
	first := s.pick()
	var firstErr error
	for k := range s {
		err := s[(first+k)%len(s)].appendEntries(entries)
		if err == nil {
			return nil
		}
		firstErr = cmp.Or(firstErr, err)
	}
	return firstErr
}

// usage sums the shards' size on disk and entry counts.
func (s shardedLog) usage() (bytes int64, entries uint64) {
	for _, l := range s {
		b, n := l.usage()
		bytes, entries = bytes+b, entries+n
	}
	return bytes, entries
}

// broken returns why a shard cannot be written, or nil when all can.
func (s shardedLog) broken() error {
	for _, l := range s {
		if err := l.broken(); err != nil {
			return err
		}
	}
	return nil
}

// close closes every shard.
func (s shardedLog) close() error {
	errs := make([]error, 0, len(s))
	for _, l := range s {
		errs = append(errs, l.close())
	}
	return errors.Join(errs...)
}
