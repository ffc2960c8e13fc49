package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hop-dev/hop/internal/testenv"
)

// Written by the previous hop (codec version 1, before campaign parameters): one event
// as a stream entry's value, and a local click log entry holding it twice. Frozen
// here on purpose: entries like these may sit in a stream or a log across an upgrade.
const (
	oldStreamEntry = "\x01\x01\x93\xa1\xb2\xc3\xd4~_\x8ak|\x8d\x9e\x0f\x1a+\xa4B\xa8\x98\xd3\xf1Ⳣ\x06\f198.51.100.7\x02NL" +
		"\x1fMozilla/5.0 (X11; Linux x86_64)\x1ehttps://news.example/item?id=1\vnl,en;q=0.8"
	oldLogEntry = "\xf1\x9e\xfd\x1f" + oldStreamEntry + oldStreamEntry
)

// oldEvent is what both old entries hold.
func oldEvent() Event {
	return Event{ID: uuid.MustParse("0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"), LinkID: 4242,
		Time: time.Date(2025, 11, 30, 12, 34, 56, 789012000, time.UTC), IP: "198.51.100.7", Country: "NL",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", Referer: "https://news.example/item?id=1", AcceptLanguage: "nl,en;q=0.8"}
}

func TestOldFormatStillDecodes(t *testing.T) {
	t.Parallel()
	want := oldEvent()
	got, err := decodeEvent(oldStreamEntry)
	if err != nil || got != want {
		t.Fatalf("old stream entry = %+v, %v; want %+v", got, err, want)
	}
	body, ok := openLogEntry([]byte(oldLogEntry))
	if !ok {
		t.Fatal("old log entry: checksum refused")
	}
	evs, err := appendEvents(nil, body)
	if err != nil || len(evs) != 2 || evs[0] != want || evs[1] != want {
		t.Fatalf("old log entry = %+v, %v; want the event twice", evs, err)
	}
	// Without campaign parameters this version still writes exactly the old form, so a
	// previous hop beside it during a rolling upgrade decodes those clicks.
	if b := appendEvent(nil, &want); string(b) != oldStreamEntry {
		t.Errorf("event without campaign encodes as %q, want the old form %q", b, oldStreamEntry)
	}
}

func TestCampaignCodecRoundTrip(t *testing.T) {
	t.Parallel()
	ev := oldEvent()
	for _, c := range []struct{ source, medium, campaign string }{
		{"news", "email", "launch"},
		{"news", "", ""},
		{"", "", "spring sale ü"},
		{strings.Repeat("s", maxEncodedString+10), "m", "c"},
	} {
		ev.UTMSource, ev.UTMMedium, ev.UTMCampaign = c.source, c.medium, c.campaign
		b := appendEvent(nil, &ev)
		if b[0] != codecVersion2 {
			t.Errorf("%+v: version %d, want %d", c, b[0], codecVersion2)
		}
		// Mixed in one entry with an old-form event, as a group commit across an
		// upgrade never makes but a decoder must not care about.
		evs, err := appendEvents(nil, string(b)+oldStreamEntry)
		if err != nil || len(evs) != 2 {
			t.Fatalf("%+v: decoded %d events, %v", c, len(evs), err)
		}
		want := ev
		want.UTMSource = truncateUTF8(want.UTMSource, maxEncodedString)
		if evs[0] != want || evs[1] != oldEvent() {
			t.Errorf("%+v: round trip = %+v", c, evs)
		}
		if _, err := decodeEvent(string(b[:len(b)-1])); err == nil {
			t.Errorf("%+v: a truncated event decoded", c)
		}
	}
}

// A stream entry written by the previous hop is stored like any other click, with
// NULL campaign columns, beside a campaign-tagged click of this version, whose
// campaigns travel in the entry's campaign field.
func TestOldStreamEntryStoredBesideCampaignClick(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	if err := rd.Client.Do(ctx, rd.Client.B().Xadd().Key(rd.Prefix+"clicks").Id("*").FieldValue().
		FieldValue(streamField, oldStreamEntry).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	p := mustPipeline(t, fastConfig(t, rd.Prefix, "c1"), rd.Client, db.Pool)
	run(t, p)
	ev := newEvents(1, 7)[0]
	ev.UTMSource, ev.UTMMedium, ev.UTMCampaign = "news", "email", "launch"
	publishAll(ctx, p, []Event{ev})
	waitRows(t, db.Pool, 2)
	get := func(id uuid.UUID) (link int64, ip string, utm [3]*string) {
		t.Helper()
		err := db.Pool.QueryRow(ctx, `SELECT link_id, ip, utm_source, utm_medium, utm_campaign FROM click_logs WHERE event_id = $1`, id).
			Scan(&link, &ip, &utm[0], &utm[1], &utm[2])
		if err != nil {
			t.Fatal(err)
		}
		return link, ip, utm
	}
	if link, ip, utm := get(oldEvent().ID); link != 4242 || ip != "198.51.100.0" || utm != [3]*string{} {
		t.Errorf("old entry stored as link %d, ip %q, utm %v; want 4242, 198.51.100.0, all NULL", link, ip, utm)
	}
	link, _, utm := get(ev.ID)
	if link != 7 || utm[0] == nil || utm[1] == nil || utm[2] == nil || *utm[0] != "news" || *utm[1] != "email" || *utm[2] != "launch" {
		t.Errorf("campaign click stored as link %d, utm %v; want 7, news/email/launch", link, utm)
	}
	if got := value(t, p.m.undecodable); got != 0 {
		t.Errorf("undecodable = %v, want 0", got)
	}
	// The campaign click took the stream (its campaigns in their own field), not the log.
	if pub, fb := value(t, p.m.published), value(t, p.m.fallback); pub != 1 || fb != 0 {
		t.Errorf("published %v, fallback %v; want 1 and 0", pub, fb)
	}
}

// A stream entry holds version-1 events only, exactly as the previous hop wrote them,
// so a previous hop consuming beside this one during a rolling upgrade decodes every
// click; the campaigns travel beside them and come back whole.
func TestStreamEntriesStayReadableByOldHops(t *testing.T) {
	t.Parallel()
	buf := []byte(nil)
	q := batchQueue{split: true, filling: &batch{entry: &buf}}
	evs := []Event{oldEvent(), oldEvent(), oldEvent()}
	evs[0].UTMSource, evs[0].UTMMedium, evs[0].UTMCampaign = "news", "email", "launch"
	evs[2].UTMCampaign = "spring"
	for i := range evs {
		q.joinLocked(&evs[i])
	}
	b := q.filling
	var old []byte
	for range evs {
		o := oldEvent()
		old = appendEvent(old, &o)
	}
	if string(*b.entry) != string(old) {
		t.Fatalf("stream entry %q, want the previous hop's form %q", *b.entry, old)
	}
	got, err := appendEvents(nil, string(*b.entry))
	if err != nil {
		t.Fatal(err)
	}
	if err := applyCampaigns(got, string(b.campaigns)); err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if got[i] != evs[i] {
			t.Errorf("event %d = %+v, want %+v", i, got[i], evs[i])
		}
	}
	// A corrupt campaign field sets nothing.
	plain, _ := appendEvents(nil, string(*b.entry))
	for _, bad := range []string{string(b.campaigns[:len(b.campaigns)-1]), "\x05\x00\x00\x00", "\x80"} {
		if err := applyCampaigns(plain, bad); err == nil {
			t.Errorf("applyCampaigns(%q) accepted garbage", bad)
		}
		if plain[0] != oldEvent() {
			t.Errorf("applyCampaigns(%q) changed an event before failing", bad)
		}
	}
}

func FuzzApplyCampaigns(f *testing.F) {
	ev := oldEvent()
	ev.UTMSource = "news"
	_, c := appendEventSplit(nil, nil, &ev, 1)
	f.Add(string(c), uint8(2))
	f.Add("\x00\x01a\x00\x00", uint8(1))
	f.Fuzz(func(t *testing.T, campaigns string, n uint8) {
		evs := make([]Event, n)
		if err := applyCampaigns(evs, campaigns); err != nil {
			for _, e := range evs {
				if e != (Event{}) {
					t.Fatalf("failed but set %+v", e)
				}
			}
		}
	})
}
