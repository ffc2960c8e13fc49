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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// attachment is what BENCH_LIVE_CLIENTS and BENCH_WEBHOOK hang on hop during the
// redirect runs: clients on GET /live that read every event (or, with
// BENCH_LIVE_PER_LINK, each on one link's feed), and one webhook to a local receiver
// that answers 204. Both run in this process, on the same machine, so their receiving
// side is part of what the redirect runs pay for.
type attachment struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	live    []*atomic.Int64 // click events read, per client
	feed    []string        // per client: the link slug it follows, "" for every click
	base    linkCounts      // clicks stored when the clients attached
	failed  atomic.Int64    // clients whose stream ended early
	srv     *http.Server
	webhook atomic.Int64 // events received by the webhook
}

// linkCounts is click_logs' rows in all and per link slug.
type linkCounts struct {
	total  int64
	bySlug map[string]int64
}

func readLinkCounts(ctx context.Context, pool *pgxpool.Pool) (linkCounts, error) {
	n := linkCounts{bySlug: map[string]int64{}}
	rows, err := pool.Query(ctx, `SELECT l.slug, count(*) FROM click_logs c JOIN links l ON l.id = c.link_id GROUP BY l.slug`)
	if err != nil {
		return n, err
	}
	var slug string
	var k int64
	_, err = pgx.ForEachRow(rows, []any{&slug, &k}, func() error {
		n.bySlug[slug] += k
		n.total += k
		return nil
	})
	return n, err
}

func attach(ctx context.Context, c *config, h *hop, pool *pgxpool.Pool, slugs []string) (*attachment, error) {
	base, err := readLinkCounts(ctx, pool)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &attachment{cancel: cancel, base: base}
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
	for i := range c.liveClients {
		n := &atomic.Int64{}
		a.live = append(a.live, n)
		u, slug := h.url+"/live", ""
		if c.livePerLink {
			slug = slugs[i%len(slugs)]
			u = h.url + "/links/" + slug + "/live"
			if c.host != "" {
				u += "?domain=" + c.host
			}
		}
		a.feed = append(a.feed, slug)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
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
	logf("attached %d /live clients (per link: %v) and %d webhook", c.liveClients, c.livePerLink, c.webhooks())
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

// check waits up to d until every /live client has read every click stored since
// it attached on its feed (all of them, or its link's), and the webhook all of them,
// then says what they received.
func (a *attachment) check(ctx context.Context, pool *pgxpool.Pool, d time.Duration) (string, error) {
	now, err := readLinkCounts(ctx, pool)
	if err != nil {
		return "", err
	}
	all := now.total - a.base.total
	want := make([]int64, len(a.live))
	var due int64
	for i, slug := range a.feed {
		want[i] = all
		if slug != "" {
			want[i] = now.bySlug[slug] - a.base.bySlug[slug]
		}
		due += want[i]
	}
	deadline := time.Now().Add(d)
	for {
		short, read := 0, int64(0)
		for i, n := range a.live {
			v := n.Load()
			read += v
			if v < want[i] {
				short++
			}
		}
		wh := a.webhook.Load()
		done := short == 0 && (a.srv == nil || wh >= all)
		if done || time.Now().After(deadline) {
			msg := fmt.Sprintf("since attaching %d clicks;", all)
			if len(a.live) > 0 {
				msg += fmt.Sprintf(" /live clients read %d events against %d due, %d short, %d cut;", read, due, short, a.failed.Load())
			}
			if a.srv != nil {
				msg += fmt.Sprintf(" webhook %d;", wh)
			}
			return fmt.Sprintf("%s all received: %v", msg, done), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (a *attachment) close() {
	a.cancel()
	a.wg.Wait()
	if a.srv != nil {
		a.srv.Close()
	}
}

// webhooks is how many webhooks the hop runs have attached: one or none.
func (c *config) webhooks() int {
	if c.webhook {
		return 1
	}
	return 0
}
