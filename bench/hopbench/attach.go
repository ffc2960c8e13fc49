package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// attachment is what BENCH_LIVE_CLIENTS and BENCH_WEBHOOK hang on hop during the
// redirect runs: clients on GET /live that read every event, and one webhook to a
// local receiver that answers 204. Both run in this process, on the same machine, so
// their receiving side is part of what the redirect runs pay for.
type attachment struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	live    []*atomic.Int64 // click events read, per client
	failed  atomic.Int64    // clients whose stream ended early
	srv     *http.Server
	webhook atomic.Int64 // events received by the webhook
}

func attach(ctx context.Context, c *config, h *hop) (*attachment, error) {
	ctx, cancel := context.WithCancel(ctx)
	a := &attachment{cancel: cancel}
	if c.webhook {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			cancel()
			return nil, err
		}
		a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var body struct{ Events []json.RawMessage }
			if err := json.NewDecoder(r.Body).Decode(&body); err == nil {
				a.webhook.Add(int64(len(body.Events)))
			}
			w.WriteHeader(http.StatusNoContent)
		})}
		go a.srv.Serve(ln) //nolint:errcheck // ends with Close
		req, _ := json.Marshal(map[string]any{"url": "http://" + ln.Addr().String() + "/hook", "include_bots": true})
		if code, b, err := httpDo(ctx, "POST", h.url+"/webhooks", apiKey, "", bytes.NewReader(req)); err != nil || code != 201 {
			a.close()
			return nil, fmt.Errorf("POST /webhooks: %d %s %v", code, b, err)
		}
	}
	for range c.liveClients {
		n := &atomic.Int64{}
		a.live = append(a.live, n)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/live", nil)
		if err != nil {
			a.close()
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			a.close()
			return nil, fmt.Errorf("GET /live: %v %v", resp, err)
		}
		a.wg.Go(func() {
			defer resp.Body.Close()
			// Count events as cheaply as a client that only discards them: these
			// receivers share the 2 cores with hop, so their own cost is kept small.
			countEvents(resp.Body, n)
			if ctx.Err() == nil {
				a.failed.Add(1)
			}
		})
	}
	logf("attached %d /live clients and %d webhook", c.liveClients, map[bool]int{true: 1}[c.webhook])
	return a, nil
}

// eventLine starts every click event hop sends on /live.
var eventLine = []byte("event: click\n")

// countEvents adds to n each click event read from r until it ends, carrying the tail
// of each read so an event line split between two reads still counts once.
func countEvents(r io.Reader, n *atomic.Int64) {
	buf := make([]byte, 64<<10)
	carry := 0
	for {
		m, err := r.Read(buf[carry:])
		if m > 0 {
			data := buf[:carry+m]
			n.Add(int64(bytes.Count(data, eventLine)))
			// Carry the last len-1 bytes: they may start a split event line, and
			// cannot hold a whole one, so nothing is counted twice.
			keep := min(len(eventLine)-1, len(data))
			carry = copy(buf, data[len(data)-keep:])
		}
		if err != nil {
			return
		}
	}
}

// received returns the fewest and most events a /live client read, and the webhook's.
func (a *attachment) received() (minLive, maxLive, webhook int64) {
	for i, n := range a.live {
		v := n.Load()
		if i == 0 || v < minLive {
			minLive = v
		}
		maxLive = max(maxLive, v)
	}
	return minLive, maxLive, a.webhook.Load()
}

// await waits until every /live client and the webhook have received want events in
// total since the start, or until d passes.
func (a *attachment) await(want int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		lo, _, wh := a.received()
		if (len(a.live) == 0 || lo >= want) && (a.srv == nil || wh >= want) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func (a *attachment) close() {
	a.cancel()
	a.wg.Wait()
	if a.srv != nil {
		a.srv.Close()
	}
}
