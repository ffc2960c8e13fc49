package ingest

import "sync"

// maxLedger bounds the XADDs a ledger remembers; past it the oldest are forgotten
// and a loss estimate becomes a lower bound.
const maxLedger = 1 << 16

// ledger remembers the stream entries this instance published that the consumer
// group has not delivered yet, so that when Redis loses the stream hop can say how
// many clicks went with it.
type ledger struct {
	mu        sync.Mutex
	recs      []ledgerRec // in publishing order, which is stream ID order
	forgotten bool        // records were dropped for the bound since the last loss
}

type ledgerRec struct {
	id     streamID
	clicks int
}

func (l *ledger) add(id streamID, clicks int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recs) >= maxLedger {
		l.recs = append(l.recs[:0], l.recs[len(l.recs)/2:]...)
		l.forgotten = true
	}
	l.recs = append(l.recs, ledgerRec{id, clicks})
}

// delivered forgets the entries up to and including id: the group has read them.
func (l *ledger) delivered(id streamID) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for i < len(l.recs) && !id.less(l.recs[i].id) {
		i++
	}
	if i > 0 {
		l.recs = append(l.recs[:0], l.recs[i:]...)
	}
}

// lost returns and forgets the clicks of entries older than before, the first entry
// of the stream Redis has now (zero when it is empty): those were never delivered
// and are gone. atLeast says some records had been forgotten for the bound.
func (l *ledger) lost(before streamID) (clicks int64, atLeast bool) {
	if l == nil {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for i < len(l.recs) && (before == streamID{} || l.recs[i].id.less(before)) {
		clicks += int64(l.recs[i].clicks)
		i++
	}
	l.recs = append(l.recs[:0], l.recs[i:]...)
	atLeast, l.forgotten = l.forgotten, false
	return clicks, atLeast
}
