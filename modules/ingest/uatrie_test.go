package ingest

import (
	"bytes"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"testing"
	"unsafe"

	"github.com/medama-io/go-useragent"

	"github.com/hop-dev/hop/internal/testenv"
)

// originalTrie is go-useragent's own trie, taken before any test packs the shared
// parser, so the packed copy can be compared with it.
var originalTrie *useragent.RuneTrie

func TestMain(m *testing.M) {
	originalTrie = useragent.NewParser().Trie
	os.Exit(testenv.Main(m))
}

// uaCorpus is user agents that reach many parts of the trie: the table tests' agents,
// browsers, crawlers and tools on several systems, and every prefix of a few.
func uaCorpus() []string {
	out := []string{"", " ", "Mozilla", "Mozilla/5.0", "(", ")", "Edg/", "Android", "iPhone",
		uaChromeWin, uaEdge, uaFirefoxMac, uaIPhone, uaIPad, uaAndroidPhone, uaAndroidTab, uaCubot}
	systems := []string{
		"Windows NT 10.0; Win64; x64", "Windows NT 6.1; WOW64", "Macintosh; Intel Mac OS X 10_15_7",
		"X11; Linux x86_64", "X11; Ubuntu; Linux x86_64", "X11; CrOS x86_64 14541.0.0",
		"Linux; Android 14; Pixel 8", "Linux; Android 9; SM-T820", "iPhone; CPU iPhone OS 16_6 like Mac OS X",
		"iPad; CPU OS 15_0 like Mac OS X", "compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0",
		"Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950", "PlayStation 5 3.11", "SMART-TV; Linux; Tizen 6.0",
	}
	engines := []string{
		"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
		"AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Gecko/20100101 Firefox/127.0", "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.68",
		"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 OPR/111.0.0.0",
		"AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
		"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 YaBrowser/24.6.0.0 Safari/537.36",
		"AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
		"like Gecko", "AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36",
	}
	for _, s := range systems {
		for _, e := range engines {
			out = append(out, "Mozilla/5.0 ("+s+") "+e)
		}
	}
	out = append(out,
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
		"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "facebookexternalhit/1.1",
		"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
		"curl/8.5.0", "Wget/1.21.4", "python-requests/2.32.3", "Go-http-client/1.1", "okhttp/4.12.0",
		"Opera/9.80 (Windows NT 6.1; U; en) Presto/2.12.388 Version/12.16", "Lynx/2.9.0dev.12 libwww-FM/2.14",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; en-US) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0 Safari/537.36",
	)
	for _, ua := range []string{uaAndroidPhone, uaIPad, uaEdge} {
		for i := range len(ua) {
			out = append(out, ua[:i])
		}
	}
	return out
}

func TestPackTrie(t *testing.T) {
	t.Parallel()
	packed := sharedUAParser().Trie
	if packed == originalTrie {
		t.Fatal("the shared parser still holds the original trie: packTrie refused this go-useragent")
	}
	sameTrie(t, runeTrieLayoutOrFail(t), unsafe.Pointer(originalTrie), unsafe.Pointer(packed))

	// The copy must outlive collections: nothing the collector scans points into it
	// except the parser.
	for range 3 {
		_ = make([]byte, 8<<20)
		runtime.GC()
	}
	debug.FreeOSMemory()
	for _, ua := range uaCorpus() {
		if got, want := packed.Get(ua), originalTrie.Get(ua); got != want {
			t.Errorf("packed trie parses %q as %+v, the original as %+v", ua, got, want)
		}
	}
}

// TestPointerFree guards the check that lets packTrie copy result entries as bytes.
func TestPointerFree(t *testing.T) {
	t.Parallel()
	type plain struct {
		_ uint8
		_ [4]int32
	}
	type withString struct {
		_ int
		_ string
	}
	for _, c := range []struct {
		typ  reflect.Type
		want bool
	}{
		{reflect.TypeFor[plain](), true},
		{reflect.TypeFor[*plain](), false},
		{reflect.TypeFor[withString](), false},
		{reflect.TypeFor[[2][]byte](), false},
	} {
		if got := pointerFree(c.typ); got != c.want {
			t.Errorf("pointerFree(%v) = %v", c.typ, got)
		}
	}
}

func FuzzPackedTrie(f *testing.F) {
	packed := sharedUAParser().Trie
	for _, ua := range uaCorpus()[:40] {
		f.Add(ua)
	}
	f.Fuzz(func(t *testing.T, ua string) {
		if got, want := packed.Get(ua), originalTrie.Get(ua); got != want {
			t.Fatalf("packed trie parses %q as %+v, the original as %+v", ua, got, want)
		}
	})
}

func runeTrieLayoutOrFail(t *testing.T) trieLayout {
	t.Helper()
	l, err := runeTrieLayout()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// sameTrie walks both tries together and fails at the first node where their children
// (rune by rune, in order) or their results (byte by byte) differ.
func sameTrie(t *testing.T, l trieLayout, a, b unsafe.Pointer) {
	t.Helper()
	type pair struct{ a, b unsafe.Pointer }
	queue := []pair{{a, b}}
	var nodes int
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		nodes++
		ca, cb := l.children(p.a), l.children(p.b)
		ra, rb := l.results(p.a), l.results(p.b)
		if ca.len != cb.len || ra.len != rb.len {
			t.Fatalf("node %d: %d children and %d results, packed %d and %d", nodes, ca.len, ra.len, cb.len, rb.len)
		}
		if ra.len > 0 {
			n := uintptr(ra.len) * l.resultSize
			if !bytes.Equal(unsafe.Slice((*byte)(ra.data), n), unsafe.Slice((*byte)(rb.data), n)) {
				t.Fatalf("node %d: results differ", nodes)
			}
		}
		for j := range ca.len {
			na, rua := l.child(ca.data, j)
			nb, rub := l.child(cb.data, j)
			if *rua != *rub {
				t.Fatalf("node %d child %d: runes differ", nodes, j)
			}
			queue = append(queue, pair{*na, *nb})
		}
	}
	if nodes < 10_000 {
		t.Fatalf("walked only %d nodes", nodes)
	}
	t.Logf("%d nodes identical", nodes)
}
