// Package tick runs the loops of hop's housekeeping services: each keeps its own
// ticker, so none waits for another's recovery.
package tick

import (
	"context"
	"time"
)

// Every runs fn on each tick of interval until ctx ends, and then returns nil.
func Every(ctx context.Context, interval time.Duration, fn func(context.Context)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			fn(ctx)
		}
	}
}
