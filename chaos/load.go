package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// refererPrefix starts the Referer of every redirect chaos sends; the request's
// sequence number follows it, so each click_logs row names the request it came from.
const refererPrefix = "https://chaos.invalid/r/"

const (
	humanUA = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
	botUA   = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)

// outcome of one request, by sequence number.
type outcome uint8

const (
	unsent   outcome = iota // never reached hop (refused connection): cannot have been captured
	answered                // a 3xx came back: the click must be counted exactly once
	refused                 // hop answered something else (5xx while a service is down)
	inFlight                // written, then the connection broke: captured or not, at most once
)

// load drives redirects at hop from many connections. Each worker owns one
// connection and writes HTTP/1.1 by hand: net/http would silently resend a GET whose
// connection broke, and a resent request that hop captured twice would look like a
// duplicate hop made.
type load struct {
	slugs   []string
	targets atomic.Pointer[[]string] // host:port of the instances to send to

	seq  atomic.Int64
	mu   sync.Mutex
	outc []outcome // by sequence number

	answeredN atomic.Int64
	stop      chan struct{}
	wg        sync.WaitGroup
}

func newLoad(slugs []string, targets []string) *load {
	l := &load{slugs: slugs, stop: make(chan struct{})}
	l.setTargets(targets)
	return l
}

func (l *load) setTargets(t []string) { l.targets.Store(&t) }

// linkOf is the link (index into slugs) a request goes to, and botOf whether it claims
// to be a crawler (one in ten, so the bot counters are checked too).
func (l *load) linkOf(seq int64) int { return int(seq % int64(len(l.slugs))) }
func botOf(seq int64) bool           { return seq%10 == 9 }

// run starts n workers.
func (l *load) run(n int) {
	for i := range n {
		l.wg.Go(func() { l.worker(i) })
	}
}

// finish stops the workers and waits for them.
func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) record(seq int64, o outcome) {
	l.mu.Lock()
	for int64(len(l.outc)) <= seq {
		l.outc = append(l.outc, unsent)
	}
	l.outc[seq] = o
	l.mu.Unlock()
	if o == answered {
		l.answeredN.Add(1)
	}
}

// outcomes returns a copy of every request's outcome.
func (l *load) outcomes() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]outcome, l.seq.Load())
	copy(out, l.outc)
	return out
}

func (l *load) worker(i int) {
	var (
		conn net.Conn
		br   *bufio.Reader
		pick = i
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		if conn == nil {
			ts := *l.targets.Load()
			c, err := net.DialTimeout("tcp", ts[pick%len(ts)], time.Second)
			if err != nil {
				// The instance is down: try the next one, without spinning.
				pick++
				select {
				case <-l.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				continue
			}
			conn, br = c, bufio.NewReaderSize(c, 4096)
		}
		seq := l.seq.Add(1) - 1
		ua := humanUA
		if botOf(seq) {
			ua = botUA
		}
		req := "GET /" + l.slugs[l.linkOf(seq)] + " HTTP/1.1\r\nHost: chaos.invalid\r\nUser-Agent: " + ua +
			"\r\nReferer: " + refererPrefix + strconv.FormatInt(seq, 10) + "\r\nAccept: */*\r\n\r\n"
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		code, keep, err := roundTrip(conn, br, req)
		switch {
		case err != nil:
			l.record(seq, inFlight)
		case code >= 300 && code < 400:
			l.record(seq, answered)
		default:
			l.record(seq, refused)
		}
		if err != nil || !keep {
			conn.Close()
			conn = nil
			pick++
			if err != nil {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// roundTrip writes one request and reads its response.
func roundTrip(conn net.Conn, br *bufio.Reader, req string) (code int, keep bool, err error) {
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, false, err
	}
	return resp.StatusCode, !resp.Close, nil
}

// parseMarker returns the sequence number in a Referer chaos sent.
func parseMarker(ref string) (int64, error) {
	s, ok := strings.CutPrefix(ref, refererPrefix)
	if !ok {
		return 0, fmt.Errorf("referer %q is not one chaos sent", ref)
	}
	return strconv.ParseInt(s, 10, 64)
}
