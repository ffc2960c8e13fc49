package weburl

import (
	"net/url"
	"testing"
)

func TestPortOK(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]bool{
		"https://e.test": true, "https://e.test:1": true, "https://e.test:65535": true, "http://[::1]:8080/x": true,
		"https://e.test:0": false, "https://e.test:65536": false, "https://e.test:99999": false,
		"https://e.test:99999999999999999999": false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := PortOK(u); got != want {
			t.Errorf("PortOK(%s) = %v, want %v", raw, got, want)
		}
	}
}
