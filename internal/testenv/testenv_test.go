package testenv_test

import (
	"context"
	"github.com/hop-dev/hop/internal/testenv"
	"testing"
)

func TestSmoke(t *testing.T) {
	t.Parallel()
	d := testenv.NewDB(t)
	var n int
	if err := d.Pool.QueryRow(context.Background(), "select count(*) from links").Scan(&n); err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRedis(t)
	_ = r
}
func TestSmoke2(t *testing.T) { t.Parallel(); d := testenv.NewDB(t); _ = d }
