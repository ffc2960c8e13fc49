package tally_test

import (
	"os"
	"testing"

	"github.com/hop-dev/hop/internal/testenv"
)

// TestMain removes this package's template database once its tests are done.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
