package hopproc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// IngestHealth is checks.ingest.details of hop's GET /health.
type IngestHealth struct {
	Mode         string `json:"mode"` // "stream" with Redis, "log" without
	StreamLength int64  `json:"stream_length"`
	Pending      int64  `json:"pending"`
	Lag          int64  `json:"lag"`
	LogEntries   int64  `json:"log_entries"` // local log entries not yet in PostgreSQL
}

// Drained says ingest holds nothing unwritten: the stream's group has caught up, and
// the local click log (the stream without Redis, the fallback with it) is empty.
func (ih IngestHealth) Drained() bool {
	if ih.Mode == "log" {
		return ih.LogEntries == 0
	}
	return ih.Lag == 0 && ih.Pending == 0 && ih.LogEntries == 0
}

// healthTimeout bounds one /health read when ctx has no earlier deadline: the tools
// poll it in loops, and a hung hop must fail a poll rather than stall the loop.
const healthTimeout = 10 * time.Second

// ReadIngestHealth reads checks.ingest.details from baseURL's /health. hop shows
// details only to a request with an API key; apiKey "" sends none. On error the
// returned IngestHealth has Lag -1, so it never reads as drained.
func ReadIngestHealth(ctx context.Context, baseURL, apiKey string) (IngestHealth, error) {
	ih := IngestHealth{Lag: -1}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/health", nil)
	if err != nil {
		return ih, err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ih, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return ih, err
	}
	// No check of the status: a degraded or down hop (503) still reports its ingest.
	var body struct {
		Checks map[string]struct {
			Status  string          `json:"status"`
			Error   string          `json:"error"`
			Details json.RawMessage `json:"details"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return ih, fmt.Errorf("health %d: %w", resp.StatusCode, err)
	}
	ck, ok := body.Checks["ingest"]
	if !ok || len(ck.Details) == 0 {
		return ih, fmt.Errorf("health %d has no ingest details (status %q, error %q)", resp.StatusCode, ck.Status, ck.Error)
	}
	err = json.Unmarshal(ck.Details, &ih)
	return ih, err
}
