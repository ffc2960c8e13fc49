package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hop-dev/hop/internal/testenv"
)

// metricValue returns the value of the sample whose line starts with series (name and
// labels exactly as exposed), or "" when it is absent.
func metricValue(exposition, series string) string {
	for line := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return v
		}
	}
	return ""
}

func TestMetricsLabelRedirectsByRouteTemplate(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	const slug = "zqxMetricSlug7"
	h.createLink(t, map[string]any{"url": "https://example.com/metrics-target", "slug": slug})

	for range 3 {
		mustStatus(t, h.do(t, http.MethodGet, "/"+slug, nil), http.StatusFound)
	}
	mustStatus(t, h.do(t, http.MethodHead, "/"+slug, nil), http.StatusFound)
	mustProblem(t, h.do(t, http.MethodGet, "/zqxUnknownSlug9", nil), http.StatusNotFound)
	// Nothing matches "/a/b/c", whatever it answers: its label must be "unmatched".
	unmatched := h.do(t, http.MethodGet, "/a/b/c", nil)
	mustStatus(t, h.do(t, http.MethodGet, "/", nil), http.StatusOK)
	mustStatus(t, h.do(t, http.MethodGet, "/robots.txt", nil), http.StatusOK)
	mustStatus(t, h.do(t, http.MethodGet, "/favicon.ico", nil), http.StatusOK)
	mustProblem(t, h.do(t, http.MethodGet, "/links/"+slug, nil), http.StatusUnauthorized)

	r := h.do(t, http.MethodGet, "/metrics", nil)
	mustStatus(t, r, http.StatusOK)
	body := string(r.Body)

	for series, want := range map[string]string{
		`hop_http_requests_total{method="GET",route="/:slug",status="302"}`:                                  "3",
		`hop_http_requests_total{method="HEAD",route="/:slug",status="302"}`:                                 "1",
		`hop_http_requests_total{method="GET",route="/:slug",status="404"}`:                                  "1",
		fmt.Sprintf(`hop_http_requests_total{method="GET",route="unmatched",status="%d"}`, unmatched.Status): "1",
		`hop_http_requests_total{method="GET",route="/",status="200"}`:                                       "1",
		`hop_http_requests_total{method="GET",route="/robots.txt",status="200"}`:                             "1",
		`hop_http_requests_total{method="GET",route="/favicon.ico",status="200"}`:                            "1",
		// robots.txt, favicon.ico and / are not redirect answers; the one unknown slug is.
		`hop_redirects_total{status="404"}`:                                               "1",
		`hop_redirects_total{status="302"}`:                                               "4", // 3 GET, 1 HEAD
		`hop_http_requests_total{method="GET",route="/links/:slug",status="401"}`:         "1",
		`hop_http_requests_total{method="POST",route="/links",status="201"}`:              "1",
		`hop_http_request_duration_seconds_count{method="GET",route="/:slug"}`:            "4",
		`hop_http_request_duration_seconds_bucket{method="GET",route="/:slug",le="+Inf"}`: "4",
	} {
		if got := metricValue(body, series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	// Slugs and raw paths are never label values: they would grow the series without bound.
	for _, leak := range []string{slug, "zqxUnknownSlug9"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics exposes %q", leak)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepLines(body, "hop_http_"))
	}
}

func grepLines(s, substr string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func TestMetricsStatusOfReturnedErrors(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := newHTTPMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEcho(defaultConfig(), describer(), slog.New(slog.DiscardHandler))
	e.Use(m.middleware())
	e.GET("/teapot/:id", func(echo.Context) error { return echo.NewHTTPError(http.StatusTeapot, "short and stout") })
	e.GET("/boom", func(echo.Context) error { return errors.New("driver says no") })

	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/teapot/1", http.StatusTeapot},
		{http.MethodGet, "/boom", http.StatusInternalServerError},
		{http.MethodPost, "/boom", http.StatusMethodNotAllowed},
		{"BREW", "/boom", http.StatusMethodNotAllowed},
		{http.MethodGet, "/no/such/route", http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status {
			t.Fatalf("%s %s answered %d, want %d (the error is rendered once)", tc.method, tc.path, rec.Code, tc.status)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%s %s: content type %q", tc.method, tc.path, ct)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "hop_http_requests_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["method"]+" "+l["route"]+" "+l["status"]] = s.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"GET /teapot/:id 418": 1,
		"GET /boom 500":       1,
		"POST /boom 405":      1,
		"OTHER /boom 405":     1, // arbitrary methods cannot grow the label set
		"GET unmatched 404":   1,
	}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("series %v, want %v", got, want)
		}
	}
}

func TestMetricsPoolCollector(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	if _, err := db.Pool.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(newPoolCollector(db.Pool)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	for _, name := range []string{"acquired_conns", "idle_conns", "constructing_conns", "total_conns", "max_conns",
		"acquires_total", "acquire_duration_seconds_total", "empty_acquires_total", "empty_acquire_wait_seconds_total",
		"canceled_acquires_total", "new_conns_total", "max_lifetime_destroys_total", "max_idle_destroys_total"} {
		if _, ok := got["hop_pgx_pool_"+name]; !ok {
			t.Errorf("hop_pgx_pool_%s is not exported", name)
		}
	}
	if got["hop_pgx_pool_max_conns"] < 1 || got["hop_pgx_pool_acquires_total"] < 1 || got["hop_pgx_pool_total_conns"] < 1 {
		t.Errorf("pool statistics do not reflect the pool: %v", got)
	}
}

// discardWriter is a reusable ResponseWriter so the benchmark measures the server, not
// the recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkMetricsRedirectPath measures what the metrics middleware adds to a request on
// the redirect route: compare "instrumented" with "bare".
func BenchmarkMetricsRedirectPath(b *testing.B) {
	redirect := func(c echo.Context) error {
		c.Response().Header()["Location"] = []string{"https://example.com/"}
		return c.NoContent(http.StatusFound)
	}
	for _, instrumented := range []bool{false, true} {
		name := "bare"
		e := echo.New()
		if instrumented {
			name = "instrumented"
			m, err := newHTTPMetrics(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			e.Use(m.middleware())
		}
		e.GET("/:slug", redirect)
		b.Run(name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/abc123", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				e.ServeHTTP(w, req)
			}
		})
	}
}
