package ingest

import (
	"slices"
	"sync"
)

// Bounds of what a ledger remembers; past either, the oldest records are forgotten
// and a loss estimate becomes a lower bound.
const (
	maxLedger      = 1 << 16
	maxLedgerBytes = 32 << 20
)

// ledger remembers the stream entries this instance published that the consumer
// group has not acknowledged yet, with their encoded clicks. A Redis without
// persistence loses undelivered entries when it dies: when the stream turns out lost,
// or as soon as Redis fails (it may come back empty), the ledger spills those clicks
// to the local click log, from which they reach PostgreSQL. A click that reaches
// PostgreSQL both ways is written once: event_id is unique.
type ledger struct {
	mu        sync.Mutex
	recs      []ledgerRec // in stream ID order
	bytes     int
	forgotten bool // records were dropped for the bounds since the last loss

	// spill makes encoded stream entries durable in the local click log; nil keeps
	// no payloads (counting only).
	spill func(entries [][]byte) error
}

type ledgerRec struct {
	id      streamID
	clicks  int
	payload []byte // the entry's encoded clicks, owned by the ledger
}

// add records an XADDed entry; payload is copied.
func (l *ledger) add(id streamID, clicks int, payload []byte) {
	if l == nil {
		return
	}
	var p []byte
	if l.spill != nil {
		p = append([]byte(nil), payload...)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recs) >= maxLedger || l.bytes+len(p) > maxLedgerBytes {
		half := len(l.recs) / 2
		for _, r := range l.recs[:half] {
			l.bytes -= len(r.payload)
		}
		clear(l.recs[:half])
		l.recs = append(l.recs[:0], l.recs[half:]...)
		l.forgotten = true
	}
	// XADDs may finish out of order: the hand-off's sender and a publish that XADDs on
	// its own (before Run starts or once it stops) run concurrently. acked reads the
	// records as a prefix in ID order, so insert in place; almost always that is the
	// end.
	i := len(l.recs)
	for i > 0 && id.less(l.recs[i-1].id) {
		i--
	}
	l.recs = slices.Insert(l.recs, i, ledgerRec{id, clicks, p})
	l.bytes += len(p)
}

// acked forgets the entries the group has acknowledged: those below floor, and floor
// itself when inclusive. Until then an entry is kept even once delivered: a reader
// holding it uncommitted (PostgreSQL down) loses it if it dies, and Redis without
// persistence would too.
func (l *ledger) acked(floor streamID, inclusive bool) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for i < len(l.recs) && (l.recs[i].id.less(floor) || inclusive && l.recs[i].id == floor) {
		l.bytes -= len(l.recs[i].payload)
		i++
	}
	if i > 0 {
		clear(l.recs[:i])
		l.recs = append(l.recs[:0], l.recs[i:]...)
	}
}

// take removes the records for which gone is true and returns them, in ID order.
func (l *ledger) take(gone func(streamID) bool) []ledgerRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ledgerRec
	rest := l.recs[:0]
	for _, r := range l.recs {
		if !gone(r.id) {
			rest = append(rest, r)
			continue
		}
		l.bytes -= len(r.payload)
		out = append(out, r)
	}
	clear(l.recs[len(rest):])
	l.recs = rest
	return out
}

// snapshot returns the records held now. Payloads are shared, not copied; the ledger
// never changes one.
func (l *ledger) snapshot() []ledgerRec {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// lost handles the entries in missing: published, never delivered, and no longer in
// Redis. It spills their clicks to the local log and returns how many it kept that way
// and how many are gone (spilling failed). atLeast says records had been forgotten for
// the bounds, so more may be gone.
func (l *ledger) lost(missing map[streamID]bool) (kept, gone int64, atLeast bool, err error) {
	if l == nil {
		return 0, 0, false, nil
	}
	recs := l.take(func(id streamID) bool { return missing[id] })
	l.mu.Lock()
	atLeast, l.forgotten = l.forgotten, false
	l.mu.Unlock()
	kept, gone, err = l.spillRecs(recs)
	return kept, gone, atLeast, err
}

// spillAll spills every undelivered entry: Redis is failing, and if it comes back
// without persistence they are gone. Should it come back with them, the reader
// writes them again and PostgreSQL keeps one copy.
func (l *ledger) spillAll() (kept, gone int64, err error) {
	if l == nil {
		return 0, 0, nil
	}
	return l.spillRecs(l.take(func(streamID) bool { return true }))
}

func (l *ledger) spillRecs(recs []ledgerRec) (kept, gone int64, err error) {
	var clicks int64
	entries := make([][]byte, 0, len(recs))
	for _, r := range recs {
		clicks += int64(r.clicks)
		if r.payload != nil {
			entries = append(entries, r.payload)
		}
	}
	if len(recs) == 0 {
		return 0, 0, nil
	}
	if l.spill == nil || len(entries) != len(recs) {
		return 0, clicks, nil
	}
	if err := l.spill(entries); err != nil {
		return 0, clicks, err
	}
	return clicks, 0, nil
}
