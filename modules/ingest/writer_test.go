package ingest

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hop-dev/hop/internal/testenv"
)

// Every column of every row arrives as given, through COPY and through the
// idempotent path for a replayed batch, a missing visitor hash as NULL.
func TestWriterStoresRowsExactly(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	w := newTestWriter(t, db.Pool)
	var rows []clickRow
	for i := range 4 {
		rows = append(rows, clickRow{
			eventID: uuid.Must(uuid.NewV7()), linkID: int64(i) - 2, clickedAt: time.Date(2025, 6, 7, 8, 9, 10, 123456000+i*1000, time.UTC),
			ip: "203.0.113.0", country: "NL", referer: "https://example.com/ü?" + strconv.Itoa(i), refererHost: "example.com",
			userAgent: uaEdge, browser: "Edge", os: "Windows", device: deviceDesktop, isBot: i%2 == 1, botReason: "",
			visitorHash: []byte{byte(i), 1, 2, 3},
		})
	}
	rows[1].botReason, rows[3].botReason = botHTTPClient, botEmpty
	rows[2].visitorHash = nil
	rows[0].utmSource, rows[0].utmMedium, rows[0].utmCampaign = "news", "email", "launch"
	rows[3].utmCampaign = "spring"
	read := func() []clickRow {
		t.Helper()
		res, err := db.Pool.Query(ctx, `SELECT event_id, link_id, clicked_at, ip, country, referer, referer_host,
			user_agent, browser, os, device, is_bot, bot_reason, visitor_hash,
			utm_source, utm_medium, utm_campaign FROM click_logs ORDER BY clicked_at`)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		var got []clickRow
		for res.Next() {
			var r clickRow
			var utm [3]pgtype.Text
			if err := res.Scan(&r.eventID, &r.linkID, &r.clickedAt, &r.ip, &r.country, &r.referer, &r.refererHost,
				&r.userAgent, &r.browser, &r.os, &r.device, &r.isBot, &r.botReason, &r.visitorHash,
				&utm[0], &utm[1], &utm[2]); err != nil {
				t.Fatal(err)
			}
			for _, u := range utm {
				if u.Valid && u.String == "" {
					t.Fatalf("event %s: an empty campaign value stored as '' instead of NULL", r.eventID)
				}
			}
			r.utmSource, r.utmMedium, r.utmCampaign = utm[0].String, utm[1].String, utm[2].String
			r.clickedAt = r.clickedAt.UTC()
			got = append(got, r)
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if _, err := db.Pool.CopyFrom(ctx, pgx.Identifier{"click_logs"}, clickColumns, &rowSource{rows: rows[:3]}); err != nil {
		t.Fatal(err)
	}
	if got := read(); !reflect.DeepEqual(got, rows[:3]) {
		t.Fatalf("after COPY:\n got %+v\nwant %+v", got, rows[:3])
	}
	if err := w.insertIdempotent(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if got := read(); !reflect.DeepEqual(got, rows) {
		t.Fatalf("after replay:\n got %+v\nwant %+v", got, rows)
	}
}

func TestWriterRejectsOnlyBadRows(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	w := newTestWriter(t, db.Pool)
	evs := newEvents(5, 1)
	evs[2].Time = time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC) // beyond timestamptz
	if err := w.write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db.Pool); n != 4 {
		t.Fatalf("%d rows, want 4", n)
	}
	if got := value(t, w.m.rejected); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
}

func BenchmarkWriteBatch(b *testing.B) {
	db := testenv.NewDB(b)
	w := newTestWriter(b, db.Pool)
	const batch = 5000
	ctx := context.Background()
	if _, err := w.enr.salts.forDay(ctx, time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		evs := newEvents(batch, 1)
		for i := range evs {
			evs[i].UserAgent = []string{uaChromeWin, uaIPhone, uaAndroidPhone, "curl/8.4.0"}[i%4]
		}
		b.StartTimer()
		if err := w.write(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
}

// A writer reuses its batch rows: a small batch after a large one stores its own
// values, with each click's own visitor hash.
func TestWriterReusesRowsSafely(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	w := newTestWriter(t, db.Pool)
	batch := func(n int, host string) []Event {
		evs := newEvents(n, 3)
		for i := range evs {
			evs[i].IP = "198.51." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250)
			evs[i].Referer = "https://" + host + "/" + strconv.Itoa(i)
		}
		return evs
	}
	large, small := batch(600, "large.example"), batch(3, "small.example")
	for _, evs := range [][]Event{large, small} {
		if err := w.write(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	for _, ev := range append(large, small...) {
		var referer string
		var hash []byte
		if err := db.Pool.QueryRow(ctx, `SELECT referer, visitor_hash FROM click_logs WHERE event_id = $1`, ev.ID).Scan(&referer, &hash); err != nil {
			t.Fatal(err)
		}
		salt, err := w.enr.salts.forDay(ctx, ev.Time)
		if err != nil {
			t.Fatal(err)
		}
		if want := visitorHash(salt, ev.LinkID, ev.IP, ev.UserAgent); referer != ev.Referer || !bytes.Equal(hash, want) {
			t.Fatalf("click %s stored referer %q, hash %x; want %q, %x", ev.ID, referer, hash, ev.Referer, want)
		}
	}
}

func TestSaltsAgreeAndExpire(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	a, b := NewSalts(db.Pool), NewSalts(db.Pool)
	now := time.Now()
	var wg sync.WaitGroup
	var sa, sb []byte
	var ea, eb error
	wg.Go(func() { sa, ea = a.forDay(ctx, now) })
	wg.Go(func() { sb, eb = b.forDay(ctx, now) })
	wg.Wait()
	if err := errors.Join(ea, eb); err != nil {
		t.Fatal(err)
	}
	if len(sa) != 32 || string(sa) != string(sb) {
		t.Fatalf("instances disagree on today's salt: %x vs %x", sa, sb)
	}
	for _, d := range []int{-1, -2, -3, -10} {
		if _, err := a.forDay(ctx, now.AddDate(0, 0, d)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := a.purge(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("purged %d salts, want 2 (3 and 10 days old)", n)
	}
	var left int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM visitor_salts").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 3 {
		t.Errorf("%d salts left, want 3 (today and two days before)", left)
	}
	if _, ok := a.salt[utcDay(now.AddDate(0, 0, -3))]; ok {
		t.Error("purged salt still cached")
	}
}
