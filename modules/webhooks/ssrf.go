package webhooks

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/internal/weburl"
)

// blockedPrefixes are ranges no webhook may reach unless private addresses are
// allowed, beyond what netip's predicates cover: "this network", carrier-grade NAT
// (where some clouds put their metadata service, 100.100.100.200), the IETF protocol
// assignments, benchmarking and reserved space, and the NAT64 prefix that maps onto
// any IPv4 address.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// blocked reports whether ip is loopback, private, link-local (which holds the
// 169.254.169.254 metadata address), unspecified, multicast or otherwise not a public
// unicast address.
func blocked(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() ||
		ip.IsUnspecified() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// guard checks webhook URLs when they are created and every address dialed after.
type guard struct {
	allowPrivate bool
	resolver     *net.Resolver
}

// parseURL validates a webhook URL's form: absolute http(s), a host, no credentials
// and no fragment.
func parseURL(raw string) (*url.URL, error) {
	if len(raw) > 2048 {
		return nil, problem.With(ErrInvalid, "url is longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, problem.With(ErrInvalid, "url is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, problem.With(ErrInvalid, "url must be http or https")
	}
	if u.Hostname() == "" || u.Opaque != "" {
		return nil, problem.With(ErrInvalid, "url must have a host")
	}
	if !weburl.PortOK(u) {
		return nil, problem.With(ErrInvalid, "url port %s is not between 1 and 65535", u.Port())
	}
	if u.User != nil {
		return nil, problem.With(ErrInvalid, "url must not carry credentials")
	}
	if u.Fragment != "" || strings.ContainsAny(raw, " \t\r\n") {
		return nil, problem.With(ErrInvalid, "url must not have a fragment or spaces")
	}
	return u, nil
}

// check validates raw and, unless private addresses are allowed, resolves its host
// and refuses it when any address it resolves to is blocked.
func (g guard) check(ctx context.Context, raw string) (*url.URL, error) {
	u, err := parseURL(raw)
	if err != nil {
		return nil, err
	}
	if g.allowPrivate {
		return u, nil
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if addrs, err = g.resolver.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, problem.With(ErrInvalid, "url host %q does not resolve", host)
		}
	}
	for _, ip := range addrs {
		if blocked(ip) {
			return nil, problem.With(ErrForbiddenURL, "url host %q resolves to %s, a loopback, private, link-local or metadata address (set HOP_WEBHOOK_ALLOW_PRIVATE=true to allow)", host, ip)
		}
	}
	return u, nil
}

// control refuses, at connect time, any blocked address: the address dialed is the
// one DNS answered this time, so a host that resolved to a public address at creation
// and to a private one now (DNS rebinding) is still refused.
func (g guard) control(_, address string, _ syscall.RawConn) error {
	if g.allowPrivate {
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("webhook dial %q: %w", address, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || blocked(ip) {
		return fmt.Errorf("webhook dial %s: %w", address, ErrForbiddenURL)
	}
	return nil
}

// client is the HTTP client of deliveries: the guard at dial time, no proxy from the
// environment (it would dial for us, past the guard), no redirects followed (a 3xx
// is a failed delivery), and the delivery timeout.
func (g guard) client(timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: g.control}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     t,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
