package redirect

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxCampaignValue bounds each stored campaign parameter, in bytes. Campaign names
// are short labels; a longer value is cut at a rune boundary.
const maxCampaignValue = 128

// campaign holds the campaign parameters of a redirect's query string.
type campaign struct {
	source, medium, name string
}

// campaignOf extracts utm_source, utm_medium and utm_campaign from a raw query string.
// Parameter names match case-insensitively and after percent-decoding; the first
// non-empty value of each wins. Values are normalised so one campaign is one row of
// its breakdown however links were tagged: decoded, control characters and invalid
// UTF-8 removed, surrounding space trimmed, lower-cased ("Newsletter" and
// "newsletter" are the same source), and cut to maxCampaignValue bytes. An absent or
// empty parameter is "". Nothing else of the query is kept.
func campaignOf(rawQuery string) campaign {
	var c campaign
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		name, value, _ := strings.Cut(pair, "=")
		var dst *string
		switch campaignParam(name) {
		case "utm_source":
			dst = &c.source
		case "utm_medium":
			dst = &c.medium
		case "utm_campaign":
			dst = &c.name
		default:
			continue
		}
		if *dst == "" {
			*dst = normalizeCampaign(value)
		}
	}
	return c
}

// campaignParam returns the lower-cased name of a campaign parameter, or "" for any
// other name. The common names are matched without allocating.
func campaignParam(name string) string {
	if strings.ContainsAny(name, "%+") {
		d, err := url.QueryUnescape(name)
		if err != nil {
			return ""
		}
		name = d
	}
	for _, p := range [...]string{"utm_source", "utm_medium", "utm_campaign"} {
		if strings.EqualFold(name, p) {
			return p
		}
	}
	return ""
}

// normalizeCampaign decodes and normalises one raw query value (see campaignOf).
func normalizeCampaign(raw string) string {
	// A value far longer than what is kept is cut before decoding: at most three
	// bytes of query ("%xx") make one byte of value.
	if len(raw) > 4*maxCampaignValue {
		raw = raw[:4*maxCampaignValue]
		if i := strings.IndexByte(raw[len(raw)-2:], '%'); i >= 0 {
			raw = raw[:len(raw)-2+i] // do not leave a cut escape behind
		}
	}
	v, err := url.QueryUnescape(raw)
	if err != nil {
		return ""
	}
	v = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return -1
		}
		return r
	}, v)
	v = strings.ToLower(strings.TrimSpace(v))
	if len(v) > maxCampaignValue {
		n := maxCampaignValue
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v = strings.TrimSpace(v[:n])
	}
	return v
}
