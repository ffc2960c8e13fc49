package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hop-dev/hop/internal/hopproc"
)

// apiKey is the bootstrap key every hop that chaos starts accepts.
const apiKey = "chaos-fixed-api-key-0123456789abcdef"

// buildHop compiles hop once into dir.
func buildHop(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "hop")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build hop: %w\n%s", err, out)
	}
	return bin, nil
}

// hop is one hop instance: a fixed port, data directory and consumer name, so that a
// restart after a kill finds its local click log and its pending stream entries.
type hop struct {
	ps              *procs
	bin, name, dir  string
	port            int
	dbURL, redisURL string
	prefix          string
	p               *hopproc.Proc
	starts          int
	logPath         string
}

func (h *hop) addr() string { return fmt.Sprintf("127.0.0.1:%d", h.port) }
func (h *hop) base() string { return "http://" + h.addr() }

// start runs hop serve and waits until /health answers 200.
func (h *hop) start() error {
	h.starts++
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + h.dir}
	env = append(env,
		"HOP_ADDR="+h.addr(),
		"HOP_BASE_URL="+h.base(),
		"DATABASE_URL="+h.dbURL,
		"HOP_DATA_DIR="+filepath.Join(h.dir, "data"),
		"REDIS_URL="+h.redisURL,
		"HOP_REDIS_PREFIX="+h.prefix,
		"HOP_CONSUMER_NAME="+h.name,
		"HOP_RATE_LIMIT_REDIRECT=off",
		"HOP_RATE_LIMIT_API=off",
		"HOP_API_KEY="+apiKey,
		"HOP_SLUG_SECRET=chaos-slug-secret-not-for-production",
		"HOP_AGGREGATE_INTERVAL=250ms",
		"HOP_SHUTDOWN_TIMEOUT=10s",
		"HOP_LOG_FORMAT=json",
		"HOP_LOG_LEVEL=info",
		"GOMAXPROCS=2",
	)
	fmt.Fprintf(logFile(h.logPath), "=== chaos: start %d of %s\n", h.starts, h.name)
	p, err := h.ps.start(h.name, h.bin, []string{"serve"}, env, h.dir, h.logPath, nil)
	if err != nil {
		return err
	}
	h.p = p
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited at start (%v):\n%s", h.name, p.Err(), p.Tail(20))
		}
		if code, _, err := httpGet(context.Background(), h.base()+"/health"); err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy within 60s:\n%s", h.name, p.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logFile opens path for appending; a failure yields io.Discard's equivalent.
func logFile(path string) io.Writer {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return io.Discard
	}
	return closingWriter{f}
}

// closingWriter closes the file after one write: for the odd marker line in a log
// that a child process writes to as well.
type closingWriter struct{ f *os.File }

func (w closingWriter) Write(b []byte) (int, error) {
	defer w.f.Close()
	return w.f.Write(b)
}

// kill9 ends hop with SIGKILL: no drain, no flush.
func (h *hop) kill9() { h.p.Kill() }

// term sends SIGTERM and waits for hop's graceful drain.
func (h *hop) term() error {
	if !h.p.Stop(syscall.SIGTERM, 60*time.Second) {
		return fmt.Errorf("%s did not stop within 60s of SIGTERM (killed)", h.name)
	}
	return nil
}

var httpClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func httpDo(ctx context.Context, method, u string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func httpGet(ctx context.Context, u string) (int, []byte, error) {
	return httpDo(ctx, http.MethodGet, u, nil)
}

// createLinks creates n links through the API and returns their slugs.
func (h *hop) createLinks(ctx context.Context, n int) ([]string, error) {
	slugs := make([]string, 0, n)
	for i := range n {
		code, b, err := httpDo(ctx, http.MethodPost, h.base()+"/links", map[string]any{"url": "https://example.com/chaos/" + strconv.Itoa(i)})
		if err != nil {
			return nil, err
		}
		var l struct {
			Slug string `json:"slug"`
		}
		if code != http.StatusCreated || json.Unmarshal(b, &l) != nil || l.Slug == "" {
			return nil, fmt.Errorf("create link: %d %s", code, b)
		}
		slugs = append(slugs, l.Slug)
	}
	return slugs, nil
}

// metric returns the sum of the samples of one metric family on /metrics.
func (h *hop) metric(ctx context.Context, name string) (float64, error) {
	_, b, err := httpGet(ctx, h.base()+"/metrics")
	if err != nil {
		return 0, err
	}
	var sum float64
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			sum += v
		}
	}
	return sum, nil
}
