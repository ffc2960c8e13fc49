package apikey

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// changeChannel is notified by a trigger on api_keys when a key is added, revoked,
// deleted or rehashed (migrations 00005 and 00012).
const changeChannel = "hop_api_keys"

// verified remembers the keys this instance has verified, so an API request does not
// need a PostgreSQL round trip for its key, and the wrong keys it has refused, so a
// client repeating one does not either. It is used only while Watch listens on
// changeChannel: every notice, and every loss or start of the listener, empties it, so
// a key revoked anywhere — through any instance or by SQL — is refused everywhere as
// soon as the notice arrives (milliseconds), and at once on the revoking instance, and
// a key added anywhere is accepted as soon as it is stored. Without a listener every
// request reads PostgreSQL, as before.
type verified struct {
	mu   sync.Mutex
	live bool   // a listener is connected
	gen  uint64 // bumped by every change, so a lookup that raced a change is not kept
	ids  map[[32]byte]int64
	bad  map[[32]byte]time.Time // refused keys and until when they stay refused
	// good holds keys found live by a lookup, listener or not. It only spares them
	// the failed-authentication limit (they are still looked up when ids cannot
	// answer), so it needs no coherence: a key refused later is dropped from it.
	good map[[32]byte]struct{}
	// next is closed by the next change (or listener start or loss) and replaced;
	// nil until someone waits for it.
	next chan struct{}
}

// maxVerified bounds each map; it starts over when full. refusedFor bounds how long a
// wrong key is remembered: a change notice normally clears it first.
const (
	maxVerified = 1024
	refusedFor  = time.Minute
)

// seen reports whether key hash h was found live by an earlier lookup.
func (v *verified) seen(h [32]byte) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.good[h]
	return ok
}

// saw records whether a lookup found key hash h live.
func (v *verified) saw(h [32]byte, live bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !live {
		delete(v.good, h)
		return
	}
	if v.good == nil || len(v.good) >= maxVerified {
		v.good = make(map[[32]byte]struct{})
	}
	v.good[h] = struct{}{}
}

// refused reports whether key hash h was refused by a lookup less than refusedFor ago.
func (v *verified) refused(h [32]byte, now time.Time) bool {
	v.mu.Lock()
	until, ok := v.bad[h]
	v.mu.Unlock()
	return ok && now.Before(until)
}

// refuse remembers a key hash refused by a lookup that started at generation gen,
// unless a change came in meanwhile or no listener is connected.
func (v *verified) refuse(h [32]byte, now time.Time, gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.live || gen != v.gen {
		return
	}
	if v.bad == nil || len(v.bad) >= maxVerified {
		v.bad = make(map[[32]byte]time.Time)
	}
	v.bad[h] = now.Add(refusedFor)
}

func (v *verified) get(h [32]byte) (int64, bool) {
	v.mu.Lock()
	id, ok := v.ids[h]
	v.mu.Unlock()
	return id, ok
}

// generation returns the value to pass to put for a lookup that starts now.
func (v *verified) generation() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.gen
}

// put keeps a key found live by a lookup that started at generation gen, unless a
// change came in meanwhile or no listener is connected.
func (v *verified) put(h [32]byte, id int64, gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.live || gen != v.gen {
		return
	}
	if v.ids == nil || len(v.ids) >= maxVerified {
		v.ids = make(map[[32]byte]int64)
	}
	v.ids[h] = id
}

// reset forgets every key; live says whether a listener is connected from now on.
func (v *verified) reset(live bool) {
	v.mu.Lock()
	v.live = live
	v.forget()
	v.mu.Unlock()
}

// changed forgets every key after a change, keeping the listener state.
func (v *verified) changed() {
	v.mu.Lock()
	v.forget()
	v.mu.Unlock()
}

// forget empties the cache and wakes whoever waits for a change; v.mu is held.
func (v *verified) forget() {
	v.gen++
	clear(v.ids)
	clear(v.bad)
	if v.next != nil {
		close(v.next)
		v.next = nil
	}
}

// changes returns a channel closed at the next change.
func (v *verified) changes() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.next == nil {
		v.next = make(chan struct{})
	}
	return v.next
}

// Changes returns a channel closed when any key may have changed: a key revoked or
// added through this instance, a change notice from another (while Watch listens),
// or the listener lost or back. A caller that holds a request open for long (a live
// stream) checks its key again then, rather than polling.
func (s *Store) Changes() <-chan struct{} {
	return s.cache.changes()
}

func (v *verified) listening() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.live
}

// Watch keeps the verified-key cache coherent until ctx ends: it holds a connection
// that LISTENs on changeChannel and empties the cache on every notice. When the
// connection is lost the cache is switched off (every request reads PostgreSQL) until
// it is back, so notices missed meanwhile cannot leave a revoked key usable.
func (s *Store) Watch(ctx context.Context) error {
	const retry = time.Second
	for {
		err := s.listen(ctx)
		s.cache.reset(false)
		if ctx.Err() != nil {
			return nil
		}
		s.logger.Warn("api key change listener lost; checking every key in PostgreSQL until it is back", "err", err, "retry_in", retry)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
	}
}

func (s *Store) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+changeChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.cache.reset(true)
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		s.cache.changed()
	}
}
