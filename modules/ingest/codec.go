package ingest

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Stream entries carry one field whose value is one or more Events (a group commit
// puts every click waiting at that moment in one entry), each in a compact binary form:
//
//	version byte (1 or 2) | 16-byte event id | varint link id | varint unix microseconds |
//	uvarint-length-prefixed IP, Country, UserAgent, Referer, AcceptLanguage |
//	version 2 only: uvarint-length-prefixed UTMSource, UTMMedium, UTMCampaign
//
// Microseconds are PostgreSQL's timestamp precision, so nothing is lost on the way.
// Each event carries its own version, so one entry may mix both, and an event without
// campaign parameters is always written as version 1: entries a previous hop wrote
// decode as before.
//
// Stream entries never carry version 2, so that a previous hop still consuming beside
// this one during a rolling upgrade decodes every entry (it would drop a whole entry
// it cannot decode): their events are all version 1, and the campaign parameters of
// the tagged ones travel in a second field, campaignField, which a previous hop
// ignores. It holds, per tagged event, the uvarint index of the event in the entry,
// then its three parameters length-prefixed. The local click log, read only by the
// process that wrote it, uses version 2 inline.
const (
	codecVersion1 = 1
	codecVersion2 = 2
	streamField   = "e"
	campaignField = "u"
	// maxEncodedString bounds each string field on the wire: a hostile user agent or
	// referer cannot bloat the stream. Enrichment truncates further.
	maxEncodedString = 4096
)

var errBadEncoding = errors.New("undecodable event")

// appendEvent appends the wire form of ev to dst.
func appendEvent(dst []byte, ev *Event) []byte {
	campaign := ev.UTMSource != "" || ev.UTMMedium != "" || ev.UTMCampaign != ""
	if campaign {
		dst = append(dst, codecVersion2)
	} else {
		dst = append(dst, codecVersion1)
	}
	dst = append(dst, ev.ID[:]...)
	dst = binary.AppendVarint(dst, ev.LinkID)
	dst = binary.AppendVarint(dst, ev.Time.UnixMicro())
	for _, s := range [...]string{ev.IP, ev.Country, ev.UserAgent, ev.Referer, ev.AcceptLanguage} {
		dst = appendString(dst, s)
	}
	if campaign {
		for _, s := range [...]string{ev.UTMSource, ev.UTMMedium, ev.UTMCampaign} {
			dst = appendString(dst, s)
		}
	}
	return dst
}

// appendEventSplit appends ev as the i-th event of a stream entry: to events in
// version 1 and, when it carries campaign parameters, to campaigns.
func appendEventSplit(events, campaigns []byte, ev *Event, i int) ([]byte, []byte) {
	bare := *ev
	bare.UTMSource, bare.UTMMedium, bare.UTMCampaign = "", "", ""
	events = appendEvent(events, &bare)
	if ev.UTMSource != "" || ev.UTMMedium != "" || ev.UTMCampaign != "" {
		campaigns = binary.AppendUvarint(campaigns, uint64(i))
		for _, s := range [...]string{ev.UTMSource, ev.UTMMedium, ev.UTMCampaign} {
			campaigns = appendString(campaigns, s)
		}
	}
	return events, campaigns
}

// applyCampaigns sets the campaign parameters of an entry's events from its
// campaignField. Nothing is set unless the whole field decodes.
func applyCampaigns(events []Event, campaigns string) error {
	type tagged struct {
		i   int
		utm [3]string
	}
	var all []tagged
	for rest := campaigns; rest != ""; {
		i, n := uvarint(rest)
		if n <= 0 || i >= uint64(len(events)) {
			return errBadEncoding
		}
		rest = rest[n:]
		t := tagged{i: int(i)}
		for k := range t.utm {
			l, n := uvarint(rest)
			if n <= 0 || l > uint64(len(rest)-n) {
				return errBadEncoding
			}
			t.utm[k], rest = rest[n:n+int(l)], rest[n+int(l):]
		}
		all = append(all, t)
	}
	for _, t := range all {
		ev := &events[t.i]
		ev.UTMSource, ev.UTMMedium, ev.UTMCampaign = t.utm[0], t.utm[1], t.utm[2]
	}
	return nil
}

// appendString appends s, bounded, with its length in front.
func appendString(dst []byte, s string) []byte {
	if len(s) > maxEncodedString {
		s = truncateUTF8(s, maxEncodedString)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeEvent parses exactly one event in the wire form written by appendEvent.
func decodeEvent(b string) (Event, error) {
	ev, rest, err := decodeOne(b)
	if err == nil && rest != "" {
		return Event{}, errBadEncoding
	}
	return ev, err
}

// appendEvents appends the events of one stream entry to dst. An entry that does not
// decode completely yields no events at all, so nothing of a corrupt entry is stored.
func appendEvents(dst []Event, b string) ([]Event, error) {
	n := len(dst)
	for b != "" {
		ev, rest, err := decodeOne(b)
		if err != nil {
			return dst[:n], err
		}
		dst, b = append(dst, ev), rest
	}
	if len(dst) == n {
		return dst, errBadEncoding
	}
	return dst, nil
}

// decodeOne parses the first event of b and returns what follows it.
func decodeOne(b string) (Event, string, error) {
	var ev Event
	if len(b) < 1+16 || (b[0] != codecVersion1 && b[0] != codecVersion2) {
		return ev, "", errBadEncoding
	}
	fields := [...]*string{&ev.IP, &ev.Country, &ev.UserAgent, &ev.Referer, &ev.AcceptLanguage,
		&ev.UTMSource, &ev.UTMMedium, &ev.UTMCampaign}
	strs := fields[:5]
	if b[0] == codecVersion2 {
		strs = fields[:]
	}
	copy(ev.ID[:], b[1:17])
	rest := b[17:]
	link, n := varint(rest)
	if n <= 0 {
		return ev, "", errBadEncoding
	}
	rest = rest[n:]
	micros, n := varint(rest)
	if n <= 0 {
		return ev, "", errBadEncoding
	}
	rest = rest[n:]
	ev.LinkID = link
	ev.Time = time.UnixMicro(micros).UTC()
	for _, dst := range strs {
		l, n := uvarint(rest)
		if n <= 0 || l > uint64(len(rest)-n) {
			return Event{}, "", errBadEncoding
		}
		*dst = rest[n : n+int(l)]
		rest = rest[n+int(l):]
	}
	if ev.ID == uuid.Nil {
		return Event{}, "", errBadEncoding
	}
	return ev, rest, nil
}

// varint and uvarint read from a string without converting it to a []byte.
func uvarint(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -1
			}
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

func varint(s string) (int64, int) {
	ux, n := uvarint(s)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, n
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// A local click log entry is a CRC-32C of the rest, little-endian, then events back
// to back as in a stream entry: the checksum tells a garbled entry from a good one.
const logChecksumLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealLogEntry writes the checksum into the first four bytes of entry.
func sealLogEntry(entry []byte) {
	binary.LittleEndian.PutUint32(entry, crc32.Checksum(entry[logChecksumLen:], castagnoli))
}

// openLogEntry returns the events part of a sealed entry, or false if the checksum
// does not match.
func openLogEntry(entry []byte) (string, bool) {
	if len(entry) < logChecksumLen ||
		binary.LittleEndian.Uint32(entry) != crc32.Checksum(entry[logChecksumLen:], castagnoli) {
		return "", false
	}
	return string(entry[logChecksumLen:]), true
}
