package links

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"

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
