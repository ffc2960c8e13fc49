// Package weburl holds what every module checks of an http(s) URL it is given.
package weburl

import (
	"net/url"
	"strconv"
)

// PortOK reports whether u names no port or one between 1 and 65535: url.Parse takes
// any digits, so https://example.com:99999 parses, and every use of it fails later.
func PortOK(u *url.URL) bool {
	p := u.Port()
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}
