// Package stats turns raw clicks into analytics. Its Aggregator is the last step of the
// click path: on a ticker it takes the click_logs rows it has not aggregated yet (by
// inserting transaction id, below every transaction still open in hop's database) and
// adds them to additive rollups in the same transaction that advances its watermark,
// so every click is counted exactly once across crashes and instances. Its Reader
// reads per-link and overview statistics from those rollups only, for the API's
// Handler and the dashboard alike; the Handler also streams raw clicks as CSV.
package stats

import "errors"

// Errors this package returns from its handlers; app's error table says how each is answered.
var (
	// ErrNotFound is returned for a slug that never existed.
	ErrNotFound = errors.New("link not found")
	// ErrGone is returned for a deleted link: its slug stays reserved and its stats
	// are no longer served, matching the redirect's 410.
	ErrGone = errors.New("link deleted")
)
