package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Retry says how a Client repeats a request that hop may answer later: reads (GET) and
// import batches, which carry an Idempotency-Key, so repeating them changes nothing.
// A 429 is waited out for as long as its Retry-After asks, within MaxWait; network
// failures and 5xx answers are tried again Attempts times, the wait doubling.
type Retry struct {
	Attempts int           // tries after the first for a failure other than 429; default 5
	Wait     time.Duration // first wait between those tries, doubling; default 500 ms
	MaxWait  time.Duration // total waiting for one request, 429s included; default 5 minutes
	// Notify, if not nil, is told of each failure before the wait that follows it.
	Notify func(err error, wait time.Duration)
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 5
	}
	if r.Wait <= 0 {
		r.Wait = 500 * time.Millisecond
	}
	if r.MaxWait <= 0 {
		r.MaxWait = 5 * time.Minute
	}
	return r
}

// RateLimited reports whether err is hop's 429 and how long its Retry-After asked to
// wait (0 when it named no time).
func RateLimited(err error) (wait time.Duration, ok bool) {
	var ae *Error
	if errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests {
		return ae.RetryAfter, true
	}
	return 0, false
}

// transient reports whether a request that failed with err may succeed if sent again:
// no answer at all (the network, a timeout) or a 5xx. A connection refused before the
// server has ever answered is not: see Client.answered.
func (c *Client) transient(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) && !c.answered.Load() {
		return false
	}
	var ae *Error
	return !errors.As(err, &ae) || ae.Status >= 500
}

// retry runs op until it succeeds or fails in a way again cannot cure, waiting between
// tries as r says. again tells which failures other than a 429 are worth another try.
func (r Retry) retry(ctx context.Context, again func(error) bool, op func() error) error {
	r = r.withDefaults()
	backoff := r.Wait
	var waited time.Duration
	for tries := 0; ; {
		err := op()
		if err == nil || ctx.Err() != nil {
			return err
		}
		wait, limited := RateLimited(err)
		if !limited {
			if !again(err) {
				return err
			}
			if tries++; tries > r.Attempts {
				return fmt.Errorf("gave up after %d tries: %w", tries, err)
			}
		}
		if wait <= 0 {
			wait = backoff
			backoff *= 2
		}
		if waited+wait > r.MaxWait {
			return fmt.Errorf("gave up: waiting %s more would pass the %s allowed for one request: %w", wait, r.MaxWait, err)
		}
		if r.Notify != nil {
			r.Notify(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		waited += wait
	}
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		const day = 24 * 60 * 60 // beyond any wait allowed; keeps the multiplication in range
		return time.Duration(min(max(n, 0), day)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
