// Package webhooks delivers clicks to subscribers' URLs as signed HTTP POSTs. Each
// webhook tails click_logs (where both ingest paths end) from its own cursor, which
// moves only when the receiver has answered 2xx, so deliveries are at least once and
// survive restarts and kill -9; one instance at a time delivers a given webhook.
package webhooks

import (
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Sentinel errors of the module.
var (
	ErrNotFound     = errors.New("webhook not found")
	ErrInvalid      = errors.New("invalid webhook")
	ErrForbiddenURL = errors.New("webhook URL resolves to a forbidden address")
	ErrNoDelivery   = errors.New("delivery not found")
	// ErrFormSent: the dashboard's create form was sent again; the webhook it made
	// the first time comes with it, unless it has been deleted since.
	ErrFormSent = errors.New("this form has already made its webhook")
)

// Config tunes delivery; zero values take the defaults.
type Config struct {
	// AllowPrivate lets webhook URLs reach loopback and private addresses.
	AllowPrivate bool
	// BatchSize is the most events in one POST (default 100).
	BatchSize int
	// BatchWait is how long a partial batch waits for more events (default 1s).
	BatchWait time.Duration
	// Timeout bounds one delivery attempt (default 10s).
	Timeout time.Duration
	// RetryBase is the delay before the first retry; each retry doubles it (default 1s).
	RetryBase time.Duration
	// RetryMax caps the delay between retries (default 1h).
	RetryMax time.Duration
	// GiveUp is how long a batch is retried, and how long a webhook may fail before it
	// is disabled (default 24h).
	GiveUp time.Duration
	// Poll is the longest wait between two looks for work (default 1s).
	Poll time.Duration
	// Window is how many raw clicks one read scans at most (default 1,000): the cost
	// of a batch for a webhook whose filters match few clicks.
	Window int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Jitter returns a number in [0, 1) (default math/rand/v2).
	Jitter func() float64
}

func (c *Config) defaults() {
	c.BatchSize = cmp.Or(c.BatchSize, 100)
	c.BatchWait = cmp.Or(c.BatchWait, time.Second)
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.RetryBase = cmp.Or(c.RetryBase, time.Second)
	c.RetryMax = cmp.Or(c.RetryMax, time.Hour)
	c.GiveUp = cmp.Or(c.GiveUp, 24*time.Hour)
	c.Poll = cmp.Or(c.Poll, time.Second)
	c.Window = cmp.Or(c.Window, 1000)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Jitter == nil {
		c.Jitter = mrand.Float64
	}
}

// Service is the webhooks API and the delivery loop.
type Service struct {
	cfg    Config
	pool   *pgxpool.Pool
	logger *slog.Logger
	guard  guard
	client *http.Client
	aead   cipher.AEAD

	wake chan struct{}

	mu    sync.Mutex
	busy  map[int64]bool
	ahead map[int64]readAhead // per webhook: events read beyond its last batch
	wg    sync.WaitGroup

	results *prometheus.CounterVec
	latency prometheus.Histogram
}

// New loads (or makes, on first start) the key that seals webhook secrets and returns
// the service; Run delivers.
func New(ctx context.Context, cfg Config, pool *pgxpool.Pool, reg prometheus.Registerer, logger *slog.Logger) (*Service, error) {
	cfg.defaults()
	if cfg.BatchSize < 1 || cfg.Window < cfg.BatchSize {
		return nil, fmt.Errorf("webhooks: BatchSize %d must be positive and at most Window %d", cfg.BatchSize, cfg.Window)
	}
	key, err := sealKey(ctx, pool)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("webhooks: seal key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("webhooks: seal key: %w", err)
	}
	g := guard{allowPrivate: cfg.AllowPrivate, resolver: net.DefaultResolver}
	s := &Service{
		cfg: cfg, pool: pool, logger: logger.With("module", "webhooks"), guard: g,
		client: g.client(cfg.Timeout), aead: aead,
		wake: make(chan struct{}, 1), busy: map[int64]bool{}, ahead: map[int64]readAhead{},
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hop_webhook_attempts_total", Help: "Webhook delivery attempts by result (ok, failed)."}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hop_webhook_attempt_seconds", Help: "Time receivers took to answer a delivery.", Buckets: prometheus.DefBuckets}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.results, s.latency} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("webhooks: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

const (
	insertKeySQL = `INSERT INTO instance_secrets (name, value) VALUES ('webhook_key', $1) ON CONFLICT (name) DO NOTHING`
	selectKeySQL = `SELECT value FROM instance_secrets WHERE name = 'webhook_key'`
)

// sealKey returns the AES-256 key every instance shares, made by whichever starts first.
func sealKey(ctx context.Context, pool *pgxpool.Pool) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("webhooks: make seal key: %w", err)
	}
	if _, err := pool.Exec(ctx, insertKeySQL, hex.EncodeToString(fresh)); err != nil {
		return nil, fmt.Errorf("webhooks: store seal key: %w", err)
	}
	var v string
	if err := pool.QueryRow(ctx, selectKeySQL).Scan(&v); err != nil {
		return nil, fmt.Errorf("webhooks: read seal key: %w", err)
	}
	key, err := hex.DecodeString(v)
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("webhooks: stored seal key is not 32 hex-encoded bytes")
	}
	return key, nil
}

func (s *Service) seal(secret string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal secret: %w", err)
	}
	return base64.StdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(secret), nil)), nil
}

func (s *Service) open(sealed string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(b) < s.aead.NonceSize() {
		return "", errors.New("open secret: malformed")
	}
	n := s.aead.NonceSize()
	p, err := s.aead.Open(nil, b[:n], b[n:], nil)
	if err != nil {
		return "", fmt.Errorf("open secret: %w", err)
	}
	return string(p), nil
}

// newSecret returns a signing secret: 32 random bytes, hex, with a recognisable prefix.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make secret: %w", err)
	}
	return "whsec_" + hex.EncodeToString(b), nil
}

// newSealedSecret makes a signing secret: the one shown once, and the sealed form
// that is stored.
func (s *Service) newSealedSecret() (secret, sealed string, err error) {
	if secret, err = newSecret(); err != nil {
		return "", "", err
	}
	sealed, err = s.seal(secret)
	return secret, sealed, err
}

// Sign returns the Hop-Signature header value for body sent at t:
// t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>." + body)>.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// backoff is the delay after the n-th failed attempt: RetryBase doubled per attempt,
// capped at RetryMax, with jitter over its upper half so failing receivers are not
// retried in lockstep.
func (s *Service) backoff(n int) time.Duration {
	d := s.cfg.RetryBase
	for i := 1; i < n && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMax)
	return d/2 + time.Duration(s.cfg.Jitter()*float64(d/2))
}
