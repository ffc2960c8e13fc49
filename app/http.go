package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/hop-dev/hop/internal/problem"
)

// Server limits.
const (
	bodyLimit      = "64K"
	bulkBodyLimit  = "10M" // 1,000 links of up to 8 KiB URLs, and their fields
	readHeaderTime = 5 * time.Second
	readTimeout    = 15 * time.Second // to send a whole request, body included
	writeTimeout   = 60 * time.Second // to take a response; CSV exports stream for a while
	idleTimeout    = 120 * time.Second
	maxHeaderBytes = 64 << 10
)

// newServer returns the HTTP server for h with hop's timeouts, which bound how long a
// slow or stalled client can hold a connection.
func newServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTime,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// statusClientGone is recorded (never sent) for requests whose client left before the
// answer, as nginx does: they are not failures of hop.
const statusClientGone = 499

// newEcho returns an Echo instance with hop's error handler (answering from describe,
// the error table) and client IP policy.
func newEcho(cfg Config, describe problem.Describe, logger *slog.Logger) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(discard{})
	e.HTTPErrorHandler = errorHandler(describe, logger)
	e.IPExtractor = ipExtractor(cfg)
	return e
}

// ipExtractor decides the client IP in one place: the peer address, or with trusted
// proxies the rightmost X-Forwarded-For address that is not one of them.
func ipExtractor(cfg Config) echo.IPExtractor {
	if len(cfg.trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range cfg.trusted {
		opts = append(opts, echo.TrustIPRange(prefixToIPNet(p)))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// problemBody is an RFC 9457 problem document.
type problemBody struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// errorHandler renders every error as application/problem+json. Unknown errors are
// logged and answered with a generic 500 so driver messages never leak.
func errorHandler(describe problem.Describe, logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		if clientGone(c, err) {
			// Nobody reads an answer, and nothing failed here.
			logger.Debug("client left before the answer", "method", c.Request().Method, "route", c.Path(), "err", err)
			c.Response().Status = statusClientGone
			return
		}
		p := describe(err)
		body := problemBody{Type: p.Type, Title: p.Title, Status: p.Status, Detail: p.Detail}
		if body.Status >= 500 {
			logger.Error("request failed", "method", c.Request().Method, "route", c.Path(), "status", body.Status, "err", err,
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		}
		c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
		c.Response().Header().Set("Cache-Control", "no-store")
		c.Response().WriteHeader(body.Status)
		if c.Request().Method == http.MethodHead {
			return
		}
		if err := c.JSON(body.Status, body); err != nil {
			logger.Debug("write problem response", "err", err)
		}
	}
}

// clientGone reports whether err comes of the request's client having left: its
// context is cancelled and err is that cancellation (not, say, a read timeout, which
// also ends the context but is answered with 408).
func clientGone(c echo.Context, err error) bool {
	return c.Request().Context().Err() != nil && errors.Is(err, context.Canceled)
}

func httpErrorDetail(he *echo.HTTPError) string {
	switch he.Code {
	case http.StatusNotFound:
		return "no such resource"
	case http.StatusMethodNotAllowed:
		return "this method is not allowed on this resource"
	}
	if m, ok := he.Message.(string); ok && m != "" {
		return strings.ToLower(m[:1]) + m[1:]
	}
	return http.StatusText(he.Code)
}

// requestLog logs one line per management request with its request id.
func requestLog(logger *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogURIPath: true, LogMethod: true, LogLatency: true, LogRequestID: true, LogError: true, LogRoutePath: true,
		HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			logger.Info("request", "method", v.Method, "path", v.URIPath, "route", v.RoutePath, "status", v.Status,
				"latency_ms", float64(v.Latency.Microseconds())/1000, "request_id", v.RequestID)
			return nil
		},
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// textParams refuses query and path parameters PostgreSQL cannot store as text (NUL
// bytes, invalid UTF-8) with a 400 naming the parameter, before any handler passes
// them to a query.
func textParams(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		for i, name := range c.ParamNames() {
			if v := c.ParamValues()[i]; !validText(v) {
				return problem.Invalid("%s: must be UTF-8 text without NUL bytes", name)
			}
		}
		for name, vs := range c.QueryParams() {
			if !validText(name) {
				return problem.Invalid("query parameter names must be UTF-8 text without NUL bytes")
			}
			for _, v := range vs {
				if !validText(v) {
					return problem.Invalid("%s: must be UTF-8 text without NUL bytes", name)
				}
			}
		}
		return next(c)
	}
}

func validText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
