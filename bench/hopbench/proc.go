package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hop-dev/hop/internal/hopproc"
)

func numCPU() int { return runtime.NumCPU() }

// stopProc ends p with SIGTERM, and SIGKILL after timeout. A kill is logged: a hop
// killed did not finish its drain, which the figures after it may show.
func stopProc(p *hopproc.Proc, timeout time.Duration) {
	if !p.Stop(syscall.SIGTERM, timeout) {
		logf("%s (pid %d) did not stop within %s: killed it", p.Name(), p.PID(), timeout)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hop is one hop server started from bin/hop with its own database and Redis prefix.
type hop struct {
	*hopproc.Proc
	url, dbURL, prefix string
	port               int
}

// dbURLFor returns c.pgURL with the database name replaced.
func dbURLFor(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

func startHop(ctx context.Context, c *config, name, dbURL, prefix string, port int, extra ...string) (*hop, error) {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "HOP_") || k == "DATABASE_URL" || k == "REDIS_URL" {
			continue
		}
		env = append(env, kv)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	hopDB, dataDir := dbURL, filepath.Join(c.tmp, "hop-data-"+name)
	if c.embedded {
		// The embedded server's URL names its data directory as the socket's host:
		// hop gets that directory and no DATABASE_URL, and starts the server itself.
		hopDB, dataDir = "", embeddedDir(dbURL)
	}
	env = append(env,
		"HOP_ADDR="+addr,
		"HOP_BASE_URL=http://"+addr,
		"DATABASE_URL="+hopDB,
		"HOP_DATA_DIR="+dataDir,
		"HOP_CREATE_DATABASE=true",
		"REDIS_URL="+c.hopRedisURL(),
		"HOP_REDIS_PREFIX="+prefix,
		"HOP_RATE_LIMIT_REDIRECT=off",
		"HOP_RATE_LIMIT_API=off",
		"HOP_API_KEY="+apiKey,
		"HOP_SLUG_SECRET=hopbench-slug-secret-not-for-production",
		"HOP_CONSUMER_NAME=hopbench-"+name,
		"HOP_LOG_FORMAT=json",
		"HOP_LOG_LEVEL=warn",
	)
	if c.webhook {
		env = append(env, "HOP_WEBHOOK_ALLOW_PRIVATE=true") // the receiver is on 127.0.0.1
	}
	env = append(env, extra...)
	p, err := hopproc.Start(hopproc.Spec{Name: "hop-" + name, Bin: c.hopBin, Args: []string{"serve"}, Env: env, Dir: c.root, Log: filepath.Join(c.tmp, "hop-"+name+".log")})
	if err != nil {
		return nil, err
	}
	h := &hop{Proc: p, url: "http://" + addr, dbURL: dbURL, prefix: prefix, port: port}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if p.Exited() {
			return nil, fmt.Errorf("hop %s exited at start (%v):\n%s", name, p.Err(), p.Tail(20))
		}
		if code, _, err := httpGet(ctx, h.url+"/health", ""); err == nil && code == 200 {
			logf("hop %s is up (pid %d, %s, db %s, prefix %s)", name, p.PID(), h.url, dbName(dbURL), prefix)
			return h, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stopProc(p, 10*time.Second)
			return nil, fmt.Errorf("hop %s not healthy within 90s:\n%s", name, p.Tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dbName(u string) string {
	pu, _ := url.Parse(u)
	if dir := pu.Query().Get("host"); strings.HasPrefix(dir, "/") {
		return strings.TrimPrefix(pu.Path, "/") + " (embedded in " + dir + ")"
	}
	return strings.TrimPrefix(pu.Path, "/")
}

// embeddedDir is the data directory of an embedded server's URL (its socket's host).
func embeddedDir(dbURL string) string {
	pu, _ := url.Parse(dbURL)
	return pu.Query().Get("host")
}

// databaseMode names the PostgreSQL hop runs on, for the report's header.
func (c *config) databaseMode() string {
	if c.embedded {
		return "embedded (no DATABASE_URL; its own server in a fresh HOP_DATA_DIR, read through its Unix socket)"
	}
	return "external, " + c.pgURL
}

var client = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true},
}

func httpDo(ctx context.Context, method, u, key, ua string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if ua != "" {
		req.Header.Set("User-Agent", ua)
		req.Header.Set("Accept-Language", "en-US,en;q=0.9")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func httpGet(ctx context.Context, u, key string) (int, []byte, error) {
	return httpDo(ctx, http.MethodGet, u, key, "", nil)
}

// metrics scrapes /metrics and returns the samples (name with labels -> value).
func (h *hop) metrics(ctx context.Context) (map[string]float64, error) {
	_, b, err := httpGet(ctx, h.url+"/metrics", "")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// procStatus reads VmRSS and VmHWM (peak RSS) of pid in kB.
func procStatus(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm
}

// sampler polls hop's RSS and ingest lag while a load runs.
type sampler struct {
	mu      sync.Mutex
	maxRSS  int64 // kB
	maxTree int64 // kB, PSS of hop and its descendants (the embedded PostgreSQL)
	maxLag  int64
	maxPend int64
	stop    chan struct{}
	done    chan struct{}
}

func startSampler(ctx context.Context, h *hop, withLag bool) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		n := 0
		for {
			rss, _ := procStatus(h.PID())
			var tree int64
			if n%5 == 0 { // walking /proc costs more: once a second
				tree = treePSS(h.PID())
			}
			s.mu.Lock()
			s.maxRSS, s.maxTree = max(s.maxRSS, rss), max(s.maxTree, tree)
			s.mu.Unlock()
			if withLag && n%2 == 0 {
				if ih, err := hopproc.ReadIngestHealth(ctx, h.url, apiKey); err == nil {
					s.mu.Lock()
					s.maxLag, s.maxPend = max(s.maxLag, ih.Lag), max(s.maxPend, ih.Pending)
					s.mu.Unlock()
				}
			}
			n++
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// tree is the peak PSS of hop with its descendants seen by a finished sampler, in kB.
func (s *sampler) tree() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxTree
}

// treePSS sums the proportional set size (kB) of pid and every process descending from
// it: hop with its embedded PostgreSQL, postmaster and backends. PSS splits shared pages
// (PostgreSQL's shared buffers) between the processes mapping them, so the sum counts
// them once, where summed RSS would count them per backend.
func treePSS(pid int) int64 {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command, which is in parentheses and may hold spaces.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			children[pp] = append(children[pp], p)
		}
	}
	var total int64
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		p := queue[0]
		queue = append(queue, children[p]...)
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Pss:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += n
				break
			}
		}
	}
	return total
}

func (s *sampler) finish() (maxRSSkB, maxLag, maxPending int64) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxRSS, s.maxLag, s.maxPend
}

// hopRedisURL is the Redis hop runs with: none with BENCH_NO_REDIS=1, so the local
// click log is the stream (the bench keeps its own Redis client for cleanup).
func (c *config) hopRedisURL() string {
	if os.Getenv("BENCH_NO_REDIS") == "1" {
		return ""
	}
	return c.redisURL
}
