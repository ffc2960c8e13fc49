package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what bench/common.lua's done() prints, plus wrk's own text.
type wrkResult struct {
	Requests           int64
	Seconds            float64
	RPS                float64
	P50, P90, P99, Max float64 // milliseconds
	Errors             int64   // socket errors (connect, read, write, timeout)
	Status             map[int]int64
	Text               string
}

func (r wrkResult) count(lo, hi int) int64 {
	var n int64
	for s, v := range r.Status {
		if s >= lo && s <= hi {
			n += v
		}
	}
	return n
}

// runWrk runs wrk with one of the bench/*.lua scripts against target.
func runWrk(ctx context.Context, c *config, script, target string, d time.Duration, env ...string) (wrkResult, error) {
	args := []string{"-t" + strconv.Itoa(c.threads), "-c" + strconv.Itoa(c.conns),
		"-d" + strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) + "s",
		"--latency", "--timeout", "5s", "-s", filepath.Join(c.luaDir, script), target}
	cmd := exec.CommandContext(ctx, "wrk", args...)
	cmd.Env = append(os.Environ(), append([]string{"BENCH_LUA_DIR=" + c.luaDir}, env...)...)
	b, err := cmd.CombinedOutput()
	r := wrkResult{Text: string(b), Status: map[int]int64{}}
	if err != nil {
		return r, fmt.Errorf("wrk %s: %w\n%s", target, err, b)
	}
	var line string
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(l, "BENCH ") {
			line = l
		}
	}
	if line == "" {
		return r, fmt.Errorf("wrk printed no BENCH line:\n%s", b)
	}
	kv := map[string]float64{}
	for f := range strings.FieldsSeq(strings.TrimPrefix(line, "BENCH ")) {
		k, v, _ := strings.Cut(f, "=")
		x, _ := strconv.ParseFloat(v, 64)
		kv[k] = x
		if s, ok := strings.CutPrefix(k, "s"); ok {
			if code, err := strconv.Atoi(s); err == nil {
				r.Status[code] = int64(x)
			}
		}
	}
	r.Requests = int64(kv["requests"])
	r.Seconds = kv["duration_us"] / 1e6
	if r.Seconds > 0 {
		r.RPS = float64(r.Requests) / r.Seconds
	}
	r.P50, r.P90, r.P99, r.Max = kv["p50_us"]/1000, kv["p90_us"]/1000, kv["p99_us"]/1000, kv["max_us"]/1000
	r.Errors = int64(kv["err_connect"] + kv["err_read"] + kv["err_write"] + kv["err_timeout"])
	return r, nil
}
