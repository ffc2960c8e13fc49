package ingest

import (
	"time"

	"github.com/google/uuid"
)

// Event is one click as captured on the redirect path, before enrichment. It is made by
// the redirect handler and handed to a Publisher; nothing here is derived or looked up,
// so building it costs no I/O.
type Event struct {
	ID             uuid.UUID // UUIDv7 made at redirect time (by Publish when zero); the idempotency key down to click_logs
	LinkID         int64
	Time           time.Time
	IP             string // client IP as decided by the app's IP extractor (full; anonymised at ingest)
	Country        string // CF-IPCountry when the peer is a trusted proxy, else ""
	UserAgent      string
	Referer        string
	AcceptLanguage string
	// Campaign parameters of the redirect's query string, as the redirect normalised
	// them (trimmed, lower-cased, bounded); "" when absent. The rest of the query is
	// never captured.
	UTMSource   string
	UTMMedium   string
	UTMCampaign string
}
