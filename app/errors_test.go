package app

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/redirect"
)

// The table is the one place statuses are chosen: every row is reachable (no earlier
// row shadows it), wrapping keeps the answer, a detail overrides the wording, and an
// error in no row is a 500 that says nothing of its cause.
func TestErrorTable(t *testing.T) {
	t.Parallel()
	describe := describer()
	seen := map[error]bool{}
	for _, k := range problemTable() {
		if seen[k.err] {
			t.Errorf("%v has two rows", k.err)
		}
		seen[k.err] = true
		p := describe(fmt.Errorf("in some call: %w", k.err))
		if p.Status != k.status || p.Type != problemBase+k.typ || p.Detail != k.detail || p.Title != http.StatusText(k.status) {
			t.Errorf("%v answered %+v, want its row %+v", k.err, p, k)
		}
	}
	if p := describe(problem.With(links.ErrSlugTaken, "slug %q is taken", "abc")); p.Status != http.StatusConflict || p.Detail != `slug "abc" is taken` {
		t.Errorf("a detailed sentinel answered %+v", p)
	}
	if p := describe(problem.Invalid("expires_at must be in the future")); p.Status != http.StatusBadRequest || p.Detail != "expires_at must be in the future" {
		t.Errorf("an invalid input answered %+v", p)
	}
	if p := describe(fmt.Errorf("%w: %w", redirect.ErrUnavailable, errors.New("dial tcp 10.0.0.5:5432: timeout"))); p.Status != http.StatusServiceUnavailable || strings.Contains(p.Detail, "10.0.0.5") {
		t.Errorf("a lookup timeout answered %+v, and must not show its cause", p)
	}
	if p := describe(errors.New("pq: password authentication failed for user hop")); p.Status != http.StatusInternalServerError || strings.Contains(p.Detail, "password") {
		t.Errorf("an unknown error answered %+v", p)
	}
}
