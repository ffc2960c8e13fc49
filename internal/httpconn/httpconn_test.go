package httpconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// pair returns a server-side *Conn accepted through Listen and the client's end.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wl := Listen(ln)
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := wl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close(); client.Close() })
	return sc.(*Conn), client
}

// readResult runs one Read of n bytes on c in the background.
func readResult(c net.Conn, n int) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, n))
		done <- err
	}()
	return done
}

// quiet quiets a body-less request on c, as the app does for a redirect.
func quiet(c *Conn) {
	Quiet(httptest.NewRequest(http.MethodGet, "/abc", nil).WithContext(ConnContext(context.Background(), c)))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

// within waits for a result, failing the test if none comes in generous time.
func within(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("blocked read or write never ended")
		return nil
	}
}

func TestReadDeadlineEndsBlockedRead(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	err := within(t, readResult(c, 16))
	if !isTimeout(err) {
		t.Fatalf("read ended with %v, want a deadline error", err)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Fatalf("read ended after %s, before its deadline", waited)
	}
}

// A deadline replaced by a later one (as net/http does per request) or cleared never
// ends a read, long after its time.
func TestAbandonedDeadlineNeverFires(t *testing.T) {
	t.Parallel()
	for name, next := range map[string]time.Time{
		"replaced by a later one": time.Now().Add(time.Hour),
		"cleared":                 {},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, client := pair(t)
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_ = c.SetReadDeadline(next)
			done := readResult(c, 16)
			time.Sleep(300 * time.Millisecond) // well past the abandoned deadline
			if _, err := client.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if err := within(t, done); err != nil {
				t.Fatalf("read after the deadline was %s: %v", name, err)
			}
		})
	}
}

func TestEarlierDeadlineMovesTheTimer(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	now := time.Now()
	_ = c.SetReadDeadline(now.Add(time.Hour))
	_ = c.SetWriteDeadline(now.Add(time.Hour))
	_ = c.SetReadDeadline(now.Add(100 * time.Millisecond))
	if err := within(t, readResult(c, 16)); !isTimeout(err) {
		t.Fatalf("read ended with %v, want a deadline error", err)
	}
}

func TestPassedDeadlineFailsAtOnceUntilReplaced(t *testing.T) {
	t.Parallel()
	c, client := pair(t)
	// A deadline passed by the timer ends a blocked read, and fails the next at once.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := within(t, readResult(c, 16)); !isTimeout(err) {
		t.Fatalf("read past the timer's deadline: %v, want a deadline error", err)
	}
	if _, err := client.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := within(t, readResult(c, 16)); !isTimeout(err) {
		t.Fatalf("read after the deadline passed: %v, want a deadline error", err)
	}
	// So does a deadline set in the past.
	_ = c.SetReadDeadline(aLongTimeAgo)
	if err := within(t, readResult(c, 16)); !isTimeout(err) {
		t.Fatalf("read past a deadline set in the past: %v, want a deadline error", err)
	}
	// A new deadline makes reads work again, and nothing was consumed meanwhile.
	_ = c.SetReadDeadline(time.Now().Add(time.Hour))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("read after a new deadline = %q, %v; want the bytes sent before", buf[:n], err)
	}
}

// After the timer fired with nothing left to do, later deadlines still arm it.
func TestTimerRearmsAfterAnIdleFiring(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_ = c.SetReadDeadline(time.Time{})
	time.Sleep(100 * time.Millisecond) // the timer fires and finds no deadline
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := within(t, readResult(c, 16)); !isTimeout(err) {
		t.Fatalf("read ended with %v, want a deadline error", err)
	}
}

func TestCloseStopsTheTimer(t *testing.T) {
	t.Parallel()
	c, _ := pair(t)
	_ = c.SetReadDeadline(time.Now().Add(time.Hour))
	c.Close()
	if c.timer.Stop() {
		t.Fatal("the timer of a closed connection was still armed")
	}
	c.fire() // a firing that was already on its way does nothing
	if err := c.SetReadDeadline(time.Now().Add(time.Hour)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("deadline on a closed connection: %v, want net.ErrClosed", err)
	}
}

func TestWriteDeadlineEndsBlockedWrite(t *testing.T) {
	t.Parallel()
	c, _ := pair(t) // the client never reads: writes block once the buffers are full
	_ = c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		for {
			if _, err := c.Write(chunk); err != nil {
				done <- err
				return
			}
		}
	}()
	if err := within(t, done); !isTimeout(err) {
		t.Fatalf("write ended with %v, want a deadline error", err)
	}
}

func TestQuietReadReadsNothing(t *testing.T) {
	t.Parallel()
	c, client := pair(t)
	if _, err := client.Write([]byte("next request")); err != nil {
		t.Fatal(err)
	}
	quiet(c)
	// What net/http's background read does: read one byte.
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != nil {
		t.Fatalf("quieted read = %d, %v; want 0, nil", n, err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "next request" {
		t.Fatalf("read after the quieted one = %q, %v; want every byte the client sent", buf[:n], err)
	}
}

func TestQuietLastsOneRead(t *testing.T) {
	t.Parallel()
	c, client := pair(t)
	if _, err := client.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	quiet(c)
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Fatalf("quieted read took %d bytes", n)
	}
	if err := within(t, readResult(c, 1)); err != nil { // the next one is real
		t.Fatalf("second one-byte read: %v", err)
	}
	// A request that ended without a background read to quiet (it had finished):
	// net/http sets the idle deadline next, which ends the quiet.
	quiet(c)
	_ = c.SetReadDeadline(time.Now().Add(time.Hour))
	buf := make([]byte, 1)
	if n, err := c.Read(buf); n != 1 || err != nil || buf[0] != 'b' {
		t.Fatalf("one-byte read after the quieted request = %d %q, %v; want the byte sent", n, buf[:n], err)
	}
}

func TestQuietNeedsABodylessRequestOnAConn(t *testing.T) {
	t.Parallel()
	c, client := pair(t)
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	withBody := httptest.NewRequest(http.MethodPost, "/abc", strings.NewReader("password=x"))
	Quiet(withBody.WithContext(ConnContext(context.Background(), c)))
	if n, err := c.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("one-byte read after quieting a request with a body = %d, %v; want the byte sent", n, err)
	}
	Quiet(httptest.NewRequest(http.MethodGet, "/abc", nil)) // no *Conn: nothing to do
	if ConnContext(context.Background(), nil) != context.Background() {
		t.Fatal("ConnContext changed the context of a connection it does not wrap")
	}
}

// server runs an http.Server on Listen with the given handler and timeouts.
func server(t *testing.T, h http.Handler, headerTimeout, idleTimeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           h,
		ConnContext:       ConnContext,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
	}
	go srv.Serve(Listen(ln))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// closedAfter waits for the server to close conn and returns how long after start it
// did; it fails the test if that takes far longer than the timeout at play.
func closedAfter(t *testing.T, conn net.Conn, start time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("server did not close the connection: %v", err)
	}
	return time.Since(start)
}

func TestServerTimeoutsStillCutSlowAndIdleClients(t *testing.T) {
	t.Parallel()
	const header, idle = 300 * time.Millisecond, 500 * time.Millisecond
	addr := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), header, idle)

	start := time.Now() // before the server can start its clock
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil { // and never the end
		t.Fatal(err)
	}
	if d := closedAfter(t, slow, start, header); d < header {
		t.Fatalf("slow header cut after %s, before the header timeout", d)
	}

	kept, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	br := bufio.NewReader(kept)
	for i := range 3 { // a few requests, so the timer has been moved by later deadlines
		start = time.Now()
		if _, err := kept.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("response %d: %v, %v", i, resp, err)
		}
		resp.Body.Close()
	}
	if d := closedAfter(t, kept, start, idle); d < idle {
		t.Fatalf("idle connection closed after %s, before the idle timeout", d)
	}
}

func TestQuietRequestsOnKeepAliveAndPipelinedConnections(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	addr := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Quiet(r)
		time.Sleep(time.Millisecond) // as a redirect waits for Redis: the background read runs
		w.Header().Set("Location", "/to/"+r.URL.Path[1:])
		w.WriteHeader(http.StatusFound)
		n.Add(1)
	}), time.Second, time.Minute)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	check := func(i int) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		resp.Body.Close()
		if want := fmt.Sprintf("/to/%d", i); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
			t.Fatalf("response %d: %d %q, want 302 %q", i, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	for i := range 200 {
		fmt.Fprintf(conn, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		check(i)
	}
	// Pipelined, more than net/http buffers: the next requests are already waiting on
	// the socket while the quieted ones run, so background reads find bytes.
	var b strings.Builder
	for i := 200; i < 600; i++ {
		fmt.Fprintf(&b, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	go func() { _, _ = conn.Write([]byte(b.String())) }()
	for i := 200; i < 600; i++ {
		check(i)
	}
	if n.Load() != 600 {
		t.Fatalf("handler ran %d times, want 600", n.Load())
	}
}

func TestUnquietRequestStillSeesClientGoAway(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{})
	addr := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	}), time.Second, time.Minute)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	conn.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the request context was not cancelled when the client went away")
	}
}
