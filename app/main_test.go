package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hop-dev/hop/internal/testenv"
)

const testAPIKey = "hop_test_key_0123456789abcdef0123456789"

// instance is a hop server started through Run for one test.
type instance struct {
	URL    string
	Key    string
	DB     *testenv.DB
	Redis  *testenv.Redis
	Config map[string]any
	logs   *syncBuffer
	stop   context.CancelFunc
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// awaitServing waits until the hop behind h has reported the address it bound (Run logs
// "listening" with it, so tests listen on :0 and never guess a free port) and answers
// /health with 200. It fails the test if hop exits first.
func awaitServing(t testing.TB, h *instance, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, "hop listening and healthy", func() bool {
		select {
		case err := <-h.done:
			h.done <- err
			t.Fatalf("hop exited during start-up: %v\nlogs:\n%s", err, h.logs)
		default:
		}
		if h.URL == "" {
			addr := listeningAddr(h.logs.String())
			if addr == "" {
				return false
			}
			h.URL = "http://" + addr
		}
		resp, err := http.Get(h.URL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// listeningAddr finds the address in Run's JSON "listening" log line, if it is there yet.
func listeningAddr(logs string) string {
	for line := range strings.Lines(logs) {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
			return rec.Addr
		}
	}
	return ""
}

// testConfig is the config of a test instance on its own database and Redis prefix.
func testConfig(t testing.TB, db *testenv.DB, rdb *testenv.Redis) map[string]any {
	cfg := map[string]any{
		"addr":                "127.0.0.1:0",
		"data_dir":            t.TempDir(),
		"database_url":        db.URL,
		"redis_url":           "",
		"base_url":            "https://hop.test",
		"api_key":             testAPIKey,
		"rate_limit_redirect": "off",
		"rate_limit_api":      "off",
		"rate_limit_timeout":  "2s", // a loaded test machine must not turn shared limits into per-instance ones
		"aggregate_interval":  "200ms",
		"log_format":          "json",
		"log_level":           "info", // Run reports its bound address in the "listening" line
		"shutdown_timeout":    "10s",
	}
	if rdb != nil {
		cfg["redis_url"] = rdb.URL
		cfg["redis_prefix"] = rdb.Prefix
	}
	return cfg
}

// startHop runs hop on its own database and Redis prefix; edit may change settings.
func startHop(t testing.TB, edit func(cfg map[string]any)) *instance {
	t.Helper()
	db := testenv.NewDB(t)
	rdb := testenv.NewRedis(t)
	cfg := testConfig(t, db, rdb)
	if edit != nil {
		edit(cfg)
	}
	return startWith(t, db, rdb, cfg)
}

// startWith runs hop with exactly cfg (used to start several instances on one database).
func startWith(t testing.TB, db *testenv.DB, rdb *testenv.Redis, cfg map[string]any) *instance {
	t.Helper()
	path := writeConfig(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	h := &instance{Key: testAPIKey, DB: db, Redis: rdb, Config: cfg, logs: &syncBuffer{}, stop: cancel, done: make(chan error, 1)}
	go func() {
		h.done <- Run(ctx, []string{"--config", path, "serve"}, func(string) string { return "" }, io.Discard, h.logs)
	}()
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("hop stopped with error: %v\nlogs:\n%s", err, h.logs)
		}
	})
	awaitServing(t, h, 30*time.Second)
	return h
}

// Stop cancels Run (like SIGTERM) and waits for it; safe to call twice.
func (h *instance) Stop() error {
	h.stop()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("hop did not stop within 30s")
	}
}

// response is a decoded HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// noRedirect is a client that reports redirects instead of following them.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

// do sends a request; body may be a string (sent as JSON) or nil; headers are pairs.
func (h *instance) do(t testing.TB, method, path string, body any, headers ...string) response {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b []byte
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") { // a stream never ends
		if b, err = io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
	}
	got := response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	checkResponse(t, req, got)
	return got
}

// api sends an authenticated management request.
func (h *instance) api(t testing.TB, method, path string, body any, headers ...string) response {
	t.Helper()
	return h.do(t, method, path, body, append([]string{"Authorization", "Bearer " + h.Key}, headers...)...)
}

// mustStatus fails the test unless r has the wanted status.
func mustStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d; body: %s", r.Status, want, r.Body)
	}
}

// mustProblem checks that r is an RFC 9457 problem with status want.
func mustProblem(t testing.TB, r response, want int) map[string]any {
	t.Helper()
	mustStatus(t, r, want)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("content type %q, want application/problem+json; body %s", ct, r.Body)
	}
	p := r.JSON(t)
	for _, k := range []string{"type", "title", "status", "detail"} {
		if _, ok := p[k]; !ok {
			t.Fatalf("problem lacks %q: %s", k, r.Body)
		}
	}
	if int(p["status"].(float64)) != want {
		t.Fatalf("problem status %v, want %d", p["status"], want)
	}
	return p
}

// createLink creates a link and returns its JSON.
func (h *instance) createLink(t testing.TB, body map[string]any) map[string]any {
	t.Helper()
	r := h.api(t, http.MethodPost, "/links", body)
	mustStatus(t, r, http.StatusCreated)
	return r.JSON(t)
}

// writeConfig writes cfg as a config file and returns its path.
func writeConfig(t testing.TB, cfg map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadRedirects sends GET /slug from clients goroutines, one request at a time each,
// until the returned stop is called; stop waits for them and returns how many
// redirects were answered with a 302. Refused requests (the server is gone) are retried.
func (h *instance) loadRedirects(slug string, clients int) (stop func() int64) {
	_, stop = h.loadRedirectsCounting(slug, clients)
	return stop
}

// loadRedirectsCounting is loadRedirects that also shows the running count, so a test
// can wait for load to be under way instead of sleeping.
func (h *instance) loadRedirectsCounting(slug string, clients int) (answered *atomic.Int64, stop func() int64) {
	answered = new(atomic.Int64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{CheckRedirect: noRedirect.CheckRedirect, Timeout: 5 * time.Second}
	for range clients {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, h.URL+"/"+slug, nil)
				req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0")
				resp, err := client.Do(req)
				if err != nil {
					time.Sleep(time.Millisecond)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusFound {
					answered.Add(1)
				}
			}
		})
	}
	return answered, func() int64 {
		close(done)
		wg.Wait()
		return answered.Load()
	}
}

// signIn posts key to the dashboard's sign-in form with client, as a browser on hop's
// own origin does, and returns the answer (its body closed).
func (h *instance) signIn(t testing.TB, client *http.Client, key string) *http.Response {
	t.Helper()
	form := url.Values{"api_key": {key}}
	req, _ := http.NewRequest(http.MethodPost, h.URL+"/dashboard/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.URL)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
