package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/testenv"
)

// BenchmarkMiddleware measures the limiter's cost per request, without routing or
// response writing: memory and Redis stores, allowed and refused requests.
func BenchmarkMiddleware(b *testing.B) {
	r := testenv.NewRedis(b)
	for _, bc := range []struct {
		name string
		rdb  rueidis.Client
		rate string
	}{
		{"memory/allowed", nil, "1000000000-S"},
		{"memory/limited", nil, "1-D"},
		{"redis/allowed", r.Client, "1000000000-S"},
		{"redis/limited", r.Client, "1-D"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := New(Config{Name: "bench", Rate: bc.rate, Prefix: r.Prefix + bc.name + ":"}, bc.rdb, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			h := l.Middleware()(func(echo.Context) error { return nil })
			e := echo.New()
			req := httptest.NewRequest(http.MethodGet, "/abc", nil)
			req.RemoteAddr = "198.51.100.1:1234"
			c := e.NewContext(req, httptest.NewRecorder())
			b.ReportAllocs()
			for b.Loop() {
				_ = h(c)
			}
		})
	}
}
