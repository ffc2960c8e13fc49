// Package httpconn wraps the HTTP server's connections to make two things net/http does
// for every keep-alive request cheaper, without changing what they do:
//
//   - Deadlines. net/http sets a connection's read deadline about six times per request
//     (idle timeout, header timeout, cleared, ...) and each future deadline re-arms a
//     runtime timer. A Conn keeps the deadlines it is given and runs one timer of its
//     own, which is moved only when a deadline comes earlier than the timer; when it
//     fires, it applies whichever deadline has passed to the real connection and sleeps
//     until the next one. A deadline is honoured at its time, as before.
//   - The background read. While a handler runs, net/http reads one byte in another
//     goroutine to notice a client going away. A redirect waits for Redis to take its
//     click, so that read finds nothing, parks in the poller, and is woken again by
//     net/http when the response is done (two more deadline changes): a system call
//     and four goroutine switches for nothing, as a redirect does not stop for a client
//     going away. After Quiet, that read returns at once having read nothing, which
//     net/http takes as "no news" (neither a pipelined byte nor an error).
//
// Together these were 4–5% of hop's CPU per redirect.
package httpconn

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Listen wraps ln so that every connection it accepts is a *Conn. Wrap a plain TCP
// listener: a *Conn hides what net/http looks for in a *tls.Conn.
func Listen(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c}, nil
}

// ConnContext is http.Server.ConnContext: it makes the connection known to Quiet.
// Without it, Quiet does nothing.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*Conn); ok {
		return context.WithValue(ctx, connKey{}, hc)
	}
	return ctx
}

type connKey struct{}

// Quiet tells the connection serving r that nobody needs to know, before the response
// is written, whether the client went away: net/http's background read for r reads
// nothing, so r's context is not cancelled when the client leaves, for all of the
// handler. It does nothing for a request with a body (its reads must reach the
// connection), on a connection that is not a *Conn, or when the background read has
// already begun reading (it then ends as usual): it saves work, and changes nothing
// else a client can see.
func Quiet(r *http.Request) {
	if r.Body != http.NoBody && r.Body != nil {
		return
	}
	if c, ok := r.Context().Value(connKey{}).(*Conn); ok {
		c.mu.Lock()
		c.quiet = true
		c.mu.Unlock()
	}
}

const (
	read = iota
	write
)

// aLongTimeAgo is a deadline that has passed: it ends blocked reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// Conn is a server connection with deadlines kept by its own timer and a background
// read that can be quieted. Its methods are safe for concurrent use.
type Conn struct {
	net.Conn

	mu      sync.Mutex
	want    [2]time.Time // read and write deadlines not applied yet; zero: none
	applied [2]bool      // the real connection holds a passed deadline
	timer   *time.Timer
	timerAt time.Time // when timer fires; zero: not armed
	quiet   bool      // the next one-byte read is net/http's background read
	closed  bool
}

// Read reads from the connection, except for a quieted background read (net/http reads
// one byte; nothing else does while a quieted request runs, as it has no body), which
// returns nothing and no error. io.Reader discourages that answer but allows it; the
// background read takes it as neither data nor an error, and finishes.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 1 {
		c.mu.Lock()
		quiet := c.quiet
		c.quiet = false
		c.mu.Unlock()
		if quiet {
			return 0, nil
		}
	}
	return c.Conn.Read(p)
}

// SetReadDeadline sets the read deadline (zero: none).
func (c *Conn) SetReadDeadline(t time.Time) error { return c.set(read, t) }

// SetWriteDeadline sets the write deadline (zero: none).
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.set(write, t) }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.set(read, t); err != nil {
		return err
	}
	return c.set(write, t)
}

func (c *Conn) set(i int, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i == read {
		// Every request's end sets the read deadline: a quiet that found no background
		// read to answer (it had already finished) must not outlive its request.
		c.quiet = false
	}
	if c.closed {
		return c.setReal(i, t) // reports the closed connection
	}
	c.want[i] = t
	if c.applied[i] {
		// A new deadline replaces one that has passed: I/O works again until it.
		c.applied[i] = false
		if err := c.setReal(i, time.Time{}); err != nil {
			return err
		}
	}
	if t.IsZero() || (!c.timerAt.IsZero() && !t.Before(c.timerAt)) {
		// The timer fires no later than t and looks again then. (A t that has passed
		// while the timer is due but has not run yet waits for it, microseconds.)
		return nil
	}
	now := time.Now()
	if !t.After(now) {
		c.want[i], c.applied[i] = time.Time{}, true
		return c.setReal(i, t)
	}
	c.arm(t, now)
	return nil
}

// fire applies the deadlines that have passed and re-arms the timer for the next one.
// A stale call (the timer was moved while it fired) does no harm: it only acts on the
// deadlines as they are now.
func (c *Conn) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timerAt = time.Time{}
	if c.closed {
		return
	}
	now := time.Now()
	var next time.Time
	for i, t := range c.want {
		switch {
		case t.IsZero():
		case !t.After(now):
			c.want[i], c.applied[i] = time.Time{}, true
			_ = c.setReal(i, aLongTimeAgo)
		case next.IsZero() || t.Before(next):
			next = t
		}
	}
	if !next.IsZero() {
		c.arm(next, now)
	}
}

func (c *Conn) arm(t, now time.Time) {
	c.timerAt = t
	if c.timer == nil {
		c.timer = time.AfterFunc(t.Sub(now), c.fire)
		return
	}
	c.timer.Reset(t.Sub(now))
}

func (c *Conn) setReal(i int, t time.Time) error {
	if i == read {
		return c.Conn.SetReadDeadline(t)
	}
	return c.Conn.SetWriteDeadline(t)
}

// Close closes the connection and stops its timer.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed, c.quiet = true, false
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite shuts down the writing side, as *net.TCPConn does; net/http uses it to
// close gracefully after a request body it did not read.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
