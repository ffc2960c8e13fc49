package app

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/httpconn"
)

// deadlineRecorder records the deadlines http.ResponseController sets through it.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	read, write int
}

func (d *deadlineRecorder) SetReadDeadline(time.Time) error  { d.read++; return nil }
func (d *deadlineRecorder) SetWriteDeadline(time.Time) error { d.write++; return nil }

func deadlineEcho(read, write time.Duration, quiet func(*http.Request)) *echo.Echo {
	e := echo.New()
	e.Use(deadlines(read, write, quiet))
	ok := func(c echo.Context) error {
		if _, err := io.Copy(io.Discard, c.Request().Body); err != nil {
			return echo.NewHTTPError(http.StatusRequestTimeout, err.Error())
		}
		return c.NoContent(http.StatusNoContent)
	}
	e.GET("/:slug", ok)
	e.HEAD("/:slug", ok)
	e.POST("/:slug", ok)
	e.GET("/:slug/qr", ok)
	e.GET("/links", ok)
	e.POST("/links", ok)
	return e
}

// A redirect arms no timer and is quieted; a request with a body gets a read
// deadline, and any response other than a redirect's a write deadline.
func TestDeadlinesPerRequest(t *testing.T) {
	t.Parallel()
	quieted := 0
	e := deadlineEcho(time.Second, time.Second, func(*http.Request) { quieted++ })
	for _, tc := range []struct {
		method, path, body string
		chunked            bool
		read, write        int
		quiet              bool
	}{
		{method: http.MethodGet, path: "/abc", quiet: true},
		{method: http.MethodHead, path: "/abc", quiet: true},
		{method: http.MethodGet, path: "/abc/qr", quiet: true},
		{method: http.MethodGet, path: "/abc", body: "x", read: 1},
		{method: http.MethodPost, path: "/abc", body: "password=x", read: 1, write: 1},
		{method: http.MethodGet, path: "/links", write: 1},
		{method: http.MethodPost, path: "/links", body: `{"url":"https://example.com"}`, read: 1, write: 1},
		{method: http.MethodPost, path: "/links", body: `{}`, chunked: true, read: 1, write: 1},
		{method: http.MethodGet, path: "/no/such/route", write: 1},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		if tc.chunked {
			req.ContentLength = -1
		}
		rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
		quieted = 0
		e.ServeHTTP(rec, req)
		if rec.read != tc.read || rec.write != tc.write {
			t.Errorf("%s %s: %d read and %d write deadlines, want %d and %d", tc.method, tc.path, rec.read, rec.write, tc.read, tc.write)
		}
		if (quieted == 1) != tc.quiet || quieted > 1 {
			t.Errorf("%s %s (body %q): quieted %d times, want quiet=%v", tc.method, tc.path, tc.body, quieted, tc.quiet)
		}
	}
}

// Through a real server on hop's connections, a client that stops sending its body is
// cut off at the read deadline instead of holding the connection.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(deadlineEcho(200*time.Millisecond, time.Second, httpconn.Quiet))
	srv.Config.ReadHeaderTimeout = time.Second
	srv.Config.ConnContext = httpconn.ConnContext
	srv.Listener = httpconn.Listen(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /links HTTP/1.1\r\nHost: hop\r\nContent-Length: 100\r\n\r\n{\"url\":"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body answered %d, want %d", res.StatusCode, http.StatusRequestTimeout)
	}
}
