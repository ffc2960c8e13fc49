package app

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// Through hop's server settings, a client that stops sending its body is cut off at
// the read timeout instead of holding the connection, and gets a 408.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	e := newEcho(Config{}, describer(), slog.New(slog.DiscardHandler))
	e.POST("/links", func(c echo.Context) error {
		if _, err := io.Copy(io.Discard, c.Request().Body); err != nil {
			return echo.NewHTTPError(http.StatusRequestTimeout, "the request body did not arrive in time")
		}
		return c.NoContent(http.StatusNoContent)
	})
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = newServer(e, slog.New(slog.DiscardHandler))
	srv.Config.ReadTimeout = 200 * time.Millisecond // the production value, shortened
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

// hop's server uses net/http's own timeouts, nothing of its own.
func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	s := newServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if s.ReadHeaderTimeout != readHeaderTime || s.ReadTimeout != readTimeout || s.WriteTimeout != writeTimeout || s.IdleTimeout != idleTimeout || s.MaxHeaderBytes != maxHeaderBytes {
		t.Fatalf("server timeouts %+v", s)
	}
}
