package redirect

import (
	"strconv"
	"strings"
)

// prefersHTML reports whether an Accept header ranks text/html above JSON, as a
// browser's does ("text/html,...,*/*;q=0.8"). A tie, "*/*" or no header at all means a
// program: it keeps getting problem JSON. Each media type takes the q of the most
// specific range that matches it (RFC 9110 §12.5.1).
func prefersHTML(accept string) bool {
	if accept == "" {
		return false
	}
	var htmlQ, jsonQ, problemQ weight
	for rest := accept; rest != ""; {
		var r string
		r, rest, _ = strings.Cut(rest, ",")
		mediaType, params, _ := strings.Cut(r, ";")
		typ, sub, ok := strings.Cut(strings.TrimSpace(mediaType), "/")
		if !ok {
			continue
		}
		q := qValue(params)
		htmlQ.match(typ, sub, "text", "html", q)
		jsonQ.match(typ, sub, "application", "json", q)
		problemQ.match(typ, sub, "application", "problem+json", q)
	}
	return htmlQ.q > 0 && htmlQ.q > jsonQ.q && htmlQ.q > problemQ.q
}

// weight is the q a media type gets from the most specific range seen so far.
type weight struct {
	q           float64
	specificity int // 0 none, 1 */*, 2 type/*, 3 type/subtype
}

func (w *weight) match(typ, sub, wantType, wantSub string, q float64) {
	s := 0
	switch {
	case strings.EqualFold(typ, wantType) && strings.EqualFold(sub, wantSub):
		s = 3
	case strings.EqualFold(typ, wantType) && sub == "*":
		s = 2
	case typ == "*" && sub == "*":
		s = 1
	default:
		return
	}
	if s > w.specificity {
		w.q, w.specificity = q, s
	}
}

// qValue is the q parameter among a range's parameters; 1 if absent, 0 if malformed.
func qValue(params string) float64 {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(q >= 0 && q <= 1) { // also NaN
			return 0
		}
		return q
	}
	return 1
}
