package redirect

import (
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCampaignOf(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100) // 200 bytes
	cases := []struct {
		query string
		want  campaign
	}{
		{"", campaign{}},
		{"utm_source=news&utm_medium=email&utm_campaign=launch", campaign{"news", "email", "launch"}},
		{"a=1&UTM_Source=News&utm_medium=E-Mail", campaign{"news", "e-mail", ""}},
		{"utm%5Fsource=x&utm_campaign=Spring+Sale", campaign{"x", "", "spring sale"}},
		{"utm_source=&utm_source=%20%20late%20&utm_source=third", campaign{"late", "", ""}},
		{"utm_source=first&utm_source=second", campaign{"first", "", ""}},
		{"utm_source=a%00b%0Ac%C3", campaign{"abc", "", ""}},
		{"utm_source=%zz&utm_medium=ok", campaign{"", "ok", ""}},
		{"utm_source", campaign{}},
		{"utm_sourcex=1&xutm_source=2&utm_term=3&utm_content=4", campaign{}},
		{"utm_campaign=" + url.QueryEscape(long), campaign{name: strings.Repeat("é", 64)}},
		{"utm_campaign=" + strings.Repeat("a", 600) + "%C3%A9", campaign{name: strings.Repeat("a", 128)}},
		{"utm_medium=" + strings.Repeat("b", 126) + "%20%20%20x", campaign{medium: strings.Repeat("b", 126)}},
	}
	for _, c := range cases {
		if got := campaignOf(c.query); got != c.want {
			t.Errorf("campaignOf(%q) = %+v, want %+v", c.query, got, c.want)
		}
	}
}

// Whatever the query, each value is storable as normalised (valid UTF-8, no control
// characters, trimmed, lower-case, bounded) and normalising it again changes nothing;
// a value sent plainly encoded comes back normalised.
func FuzzCampaignOf(f *testing.F) {
	f.Add("utm_source=news&utm_medium=email&utm_campaign=launch", "Spring Sale")
	f.Add("UTM%5FSOURCE=%E2%82%AC&utm_campaign=%", "\x00x\xff")
	f.Add("utm_medium="+strings.Repeat("%41", 300), " İstanbul ")
	f.Fuzz(func(t *testing.T, query, value string) {
		c := campaignOf(query)
		for _, v := range []string{c.source, c.medium, c.name} {
			checkCampaignValue(t, v)
			if again := normalizeCampaign(url.QueryEscape(v)); again != v {
				t.Fatalf("normalising %q again gives %q", v, again)
			}
		}
		got := campaignOf("x=1&utm_source=" + url.QueryEscape(value)).source
		checkCampaignValue(t, got)
		if want := normalizeCampaign(url.QueryEscape(value)); got != want {
			t.Fatalf("source %q, want %q", got, want)
		}
	})
}

func checkCampaignValue(t *testing.T, v string) {
	t.Helper()
	if len(v) > maxCampaignValue || !utf8.ValidString(v) || strings.TrimSpace(v) != v ||
		strings.ContainsFunc(v, unicode.IsControl) || strings.ContainsRune(v, utf8.RuneError) || strings.ToLower(v) != v {
		t.Fatalf("campaign value %q is not normalised", v)
	}
}

func BenchmarkCampaignOf(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = campaignOf("utm_source=newsletter&utm_medium=email&utm_campaign=spring&ref=x")
	}
}
