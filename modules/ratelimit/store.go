package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/common"
)

// countScript adds ARGV[1] to the counter in KEYS[1] and returns {count, ttl in ms}.
// The window starts at the first hit: a key without a TTL gets one of ARGV[2] ms.
// Checking PTTL instead of "count == increment" also heals a key that lost its TTL,
// which would otherwise lock a client out forever. An increment of 0 is a peek: it
// reads without creating the key, so one script serves every Store method. A negative
// increment takes back hits of the current window only: it never creates a key nor
// goes below zero, so a refund cannot grant extra hits in a later window.
const countScript = `
local n = tonumber(ARGV[1])
if n <= 0 then
	local v = redis.call("GET", KEYS[1])
	if not v then
		return {0, 0}
	end
	v = tonumber(v)
	if n < 0 then
		v = math.max(v + n, 0)
		redis.call("SET", KEYS[1], v, "KEEPTTL")
	end
	return {v, redis.call("PTTL", KEYS[1])}
end
local count = redis.call("INCRBY", KEYS[1], n)
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then
	redis.call("PEXPIRE", KEYS[1], ARGV[2])
	ttl = tonumber(ARGV[2])
end
return {count, ttl}
`

// Store is a limiter.Store on Redis through rueidis, so a limit holds across every hop
// instance sharing the Redis server. It keeps a fixed-window counter per key.
type Store struct {
	client rueidis.Client
	prefix string
	script *rueidis.Lua
}

var _ limiter.Store = (*Store)(nil)

// NewStore returns a Store whose keys are prefix followed by the limiter key.
func NewStore(client rueidis.Client, prefix string) *Store {
	// Not the retryable variant: a retried INCRBY could count a request twice.
	return &Store{client: client, prefix: prefix, script: rueidis.NewLuaScript(countScript)}
}

// Get counts one hit for key and returns the resulting limit context.
func (s *Store) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return s.Increment(ctx, key, 1, rate)
}

// Increment adds count hits for key and returns the resulting limit context.
func (s *Store) Increment(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	return s.run(ctx, key, count, rate)
}

// Peek returns the limit context for key without counting a hit.
func (s *Store) Peek(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return s.run(ctx, key, 0, rate)
}

// Reset clears the counter for key.
func (s *Store) Reset(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	if err := s.client.Do(ctx, s.client.B().Del().Key(s.prefix+key).Build()).Error(); err != nil {
		return limiter.Context{}, fmt.Errorf("reset rate limit: %w", err)
	}
	now := time.Now()
	return common.GetContextFromState(now, rate, now.Add(rate.Period), 0), nil
}

func (s *Store) run(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	keys := [1]string{s.prefix + key}
	args := [2]string{strconv.FormatInt(count, 10), strconv.FormatInt(rate.Period.Milliseconds(), 10)}
	resp := s.script.Exec(ctx, s.client, keys[:], args[:])
	n, ttl, err := parseCountTTL(resp)
	if err != nil {
		return limiter.Context{}, fmt.Errorf("rate limit script: %w", err)
	}
	now := time.Now()
	expiration := now.Add(rate.Period)
	if ttl > 0 {
		expiration = now.Add(time.Duration(ttl) * time.Millisecond)
	}
	return common.GetContextFromState(now, rate, expiration, n), nil
}

func parseCountTTL(resp rueidis.RedisResult) (count, ttl int64, err error) {
	arr, err := resp.ToArray()
	if err != nil {
		return 0, 0, err
	}
	if len(arr) != 2 {
		return 0, 0, errors.New("want {count, ttl} reply")
	}
	if count, err = arr[0].AsInt64(); err != nil {
		return 0, 0, err
	}
	if ttl, err = arr[1].AsInt64(); err != nil {
		return 0, 0, err
	}
	return count, ttl, nil
}
