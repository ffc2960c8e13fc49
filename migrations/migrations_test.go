package migrations_test

import (
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hop-dev/hop/internal/testenv"
)

// TestMain removes this package's template database once its tests are done.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Every BRIN index asks for each block range to be summarized as soon as it is filled:
// one that waits for VACUUM is read whole for every range filled since.
func TestBRINIndexesAutosummarize(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	rows, err := db.Pool.Query(t.Context(), `
SELECT c.relname, 'autosummarize=on' = ANY(coalesce(c.reloptions, '{}'))
FROM pg_class c JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE am.amname = 'brin' AND n.nspname = current_schema()
ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var name string
	var auto bool
	if _, err := pgx.ForEachRow(rows, []any{&name, &auto}, func() error {
		names = append(names, name)
		if !auto {
			t.Errorf("BRIN index %s does not autosummarize", name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) < 3 {
		t.Errorf("BRIN indexes = %v, want click_logs', daily_visitors' and hourly_stats' at least", names)
	}
}
