package ingest

import (
	"os"
	"testing"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
