package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hop-dev/hop/internal/tick"
)

// trimmerConfig tunes the trimmer. Zero values take the defaults.
type trimmerConfig struct {
	// Interval is how often the stream is trimmed and its metrics refreshed
	// (default 1s).
	Interval time.Duration
}

// trimTimeout bounds one round of the trimmer.
const trimTimeout = time.Second

// trimmer removes stream entries every group has acknowledged, refreshes the stream
// metrics, and tells the ledger what the group has acknowledged.
type trimmer struct {
	cfg trimmerConfig
	s   *stream
}

func newTrimmer(cfg trimmerConfig, s *stream) (*trimmer, error) {
	cfg.Interval = cmp.Or(cfg.Interval, time.Second)
	if cfg.Interval <= 0 {
		return nil, errors.New("ingest trimmer: Interval must be positive")
	}
	return &trimmer{cfg: cfg, s: s}, nil
}

func (t *trimmer) Run(ctx context.Context) error {
	return tick.Every(ctx, t.cfg.Interval, func(ctx context.Context) {
		// rueidis retries read-only commands while the context lives: without a
		// deadline a dead Redis would hold this loop, and the spill below, forever.
		rctx, cancel := context.WithTimeout(ctx, trimTimeout)
		defer cancel()
		if err := t.runOnce(rctx); err != nil && ctx.Err() == nil {
			t.s.logger.Warn("stream trim failed", "error", err)
			// Redis may be gone. With no clicks arriving (redirects failing too, say)
			// the hand-off's breaker never opens, so this is where the clicks the
			// group has not acknowledged are made safe.
			spillUndelivered(t.s.ledger, t.s.logger)
		}
	})
}

func (t *trimmer) runOnce(ctx context.Context) error {
	if _, err := t.s.health(ctx); err != nil {
		return err
	}
	return t.trim(ctx)
}

// trim removes entries below the oldest one some group has not acknowledged: for each
// group its smallest pending ID, or, with nothing pending, its last delivered ID.
// Entries never delivered to a group are above its last delivered ID, so nothing a
// group still needs is removed. "~" lets Redis trim whole nodes only, which trims
// less, never more.
//
// It first compares the stream's epoch with the one this instance saw: another
// instance may have recreated the group after Redis lost the stream, before this
// instance's reader noticed. Then the group's state is not about this instance's
// undelivered entries, so they are handled as lost (see stream.reportReset) instead of
// being taken as acknowledged, and the ledger learns what is acknowledged only from a
// group read under an unchanged epoch.
func (t *trimmer) trim(ctx context.Context) error {
	s := t.s
	epoch, err := s.currentEpoch(ctx)
	if err != nil {
		return err
	}
	look := sameStream
	if epoch == "" {
		// Lost and not made anew yet (or an epoch key gone on its own): the reader's
		// look, which makes the group and the epoch, so trimming never stops for want
		// of one.
		if look, err = s.ensureGroup(ctx); err != nil {
			return err
		}
		epoch = s.seenEpoch()
	} else if s.sawEpoch(epoch) {
		look = streamMadeAnew
	}
	s.noticed(ctx, look, "the stream was made anew (its epoch changed) before this instance's reader noticed")
	groups, err := s.groups(ctx)
	if err != nil || len(groups) == 0 {
		return err
	}
	var minID, ackFloor streamID
	var ackInclusive, ours bool
	for i, g := range groups {
		idStr := g.lastDelivered
		if g.pending > 0 {
			arr, err := s.rdb.Do(ctx, s.rdb.B().Xpending().Key(s.key).Group(g.name).Build()).ToArray()
			if err != nil {
				return fmt.Errorf("XPENDING %s: %w", g.name, err)
			}
			if len(arr) < 2 {
				return nil
			}
			if idStr, err = arr[1].ToString(); err != nil {
				return nil // acknowledged meanwhile; try again next time
			}
		}
		id, ok := parseStreamID(idStr)
		if !ok {
			return fmt.Errorf("group %s: unparseable stream ID %q", g.name, idStr)
		}
		if g.name == groupName {
			// Below the oldest pending entry (or up to the last delivered one, with
			// none pending) every entry is acknowledged: committed to PostgreSQL.
			ackFloor, ackInclusive, ours = id, g.pending == 0, true
		}
		if i == 0 || id.less(minID) {
			minID = id
		}
	}
	if ours {
		// The group read belongs to the epoch seen above only if it is still current.
		if now, err := s.currentEpoch(ctx); err != nil || now != epoch {
			return err
		}
		s.ledger.acked(ackFloor, ackInclusive)
	}
	if minID == (streamID{}) {
		return nil
	}
	n, err := s.rdb.Do(ctx, s.rdb.B().Xtrim().Key(s.key).Minid().Almost().Threshold(minID.String()).Build()).AsInt64()
	if err != nil {
		return fmt.Errorf("XTRIM MINID: %w", err)
	}
	s.m.trimmed.Add(float64(n))
	return nil
}
