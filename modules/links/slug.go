package links

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sqids/sqids-go"
)

const baseAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// slugger turns link ids into short slugs with sqids. The alphabet is shuffled by the
// secret, so slugs of consecutive ids do not reveal the sequence to outsiders, and the
// same secret always yields the same slugs. sqids' blocklist keeps profanity out.
type slugger struct {
	sq *sqids.Sqids
}

func newSlugger(secret string, minLength int) (*slugger, error) {
	sum := sha256.Sum256([]byte("hop-slug-alphabet:" + secret))
	rng := rand.New(rand.NewChaCha8(sum))
	alphabet := []byte(baseAlphabet)
	rng.Shuffle(len(alphabet), func(i, j int) { alphabet[i], alphabet[j] = alphabet[j], alphabet[i] })
	sq, err := sqids.New(sqids.Options{Alphabet: string(alphabet), MinLength: uint8(minLength)})
	if err != nil {
		return nil, fmt.Errorf("slug generator: %w", err)
	}
	return &slugger{sq: sq}, nil
}

func (s *slugger) slug(id int64) (string, error) {
	slug, err := s.sq.Encode([]uint64{uint64(id)})
	if err != nil {
		return "", fmt.Errorf("encode slug: %w", err)
	}
	return slug, nil
}

const (
	insertSlugSecret = `INSERT INTO instance_secrets (name, value) VALUES ('slug_secret', $1) ON CONFLICT (name) DO NOTHING`
	selectSlugSecret = `SELECT value FROM instance_secrets WHERE name = 'slug_secret'`
)

// StoredSlugSecret returns the slug secret kept in the database for when
// HOP_SLUG_SECRET is unset, making a random one at first start: without a secret of
// its own an instance would shuffle the alphabet like every other hop, and its slugs
// would decode back to the link ids. Instances starting together keep the first one
// written. Existing slugs are stored, so a new secret changes only future slugs.
func StoredSlugSecret(ctx context.Context, pool *pgxpool.Pool) (secret string, generated bool, err error) {
	b := make([]byte, 32)
	if _, err := crand.Read(b); err != nil {
		return "", false, fmt.Errorf("generate slug secret: %w", err)
	}
	tag, err := pool.Exec(ctx, insertSlugSecret, hex.EncodeToString(b))
	if err != nil {
		return "", false, fmt.Errorf("store slug secret: %w", err)
	}
	// A separate statement, so it sees a secret another instance committed meanwhile.
	if err := pool.QueryRow(ctx, selectSlugSecret).Scan(&secret); err != nil {
		return "", false, fmt.Errorf("read slug secret: %w", err)
	}
	return secret, tag.RowsAffected() == 1, nil
}
