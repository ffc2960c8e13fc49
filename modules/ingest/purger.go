package ingest

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hop-dev/hop/internal/tick"
)

// purgerConfig tunes the salt purger. Zero values take the defaults.
type purgerConfig struct {
	// Interval is how often old visitor salts are deleted (default 1h).
	Interval time.Duration
}

// purger deletes visitor salts past their retention, at start and then on its ticker,
// so visitor hashes of those days can never be recomputed.
type purger struct {
	cfg    purgerConfig
	salts  *Salts
	logger *slog.Logger
	now    func() time.Time
}

func newPurger(cfg purgerConfig, salts *Salts, logger *slog.Logger) (*purger, error) {
	cfg.Interval = cmp.Or(cfg.Interval, time.Hour)
	if cfg.Interval <= 0 {
		return nil, errors.New("ingest salt purger: Interval must be positive")
	}
	return &purger{cfg: cfg, salts: salts, logger: logger, now: time.Now}, nil
}

func (p *purger) Run(ctx context.Context) error {
	p.runOnce(ctx)
	return tick.Every(ctx, p.cfg.Interval, p.runOnce)
}

func (p *purger) runOnce(ctx context.Context) {
	if _, err := p.salts.purge(ctx, p.now()); err != nil && ctx.Err() == nil {
		p.logger.Warn("visitor salt housekeeping failed", "error", err)
	}
}
