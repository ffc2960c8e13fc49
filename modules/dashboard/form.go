package dashboard

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/links"
)

// redirectStatuses are the choices of the redirect status select, the links module's.
var redirectStatuses = []int{301, 302, 303, 307, 308}

// formTime is the layout of an <input type="datetime-local">, which the forms read as UTC.
const formTime = "2006-01-02T15:04"

// linkForm is a create or edit form as submitted (or as filled from the link), shown
// again with its error. The password is never sent back to the browser.
type linkForm struct {
	URL, Slug, Tags string
	Domain          string // create: the host picked; "" is the default domain
	ExpiresAt       string // formTime, UTC
	MaxClicks       string
	RedirectStatus  int
	ForwardQuery    bool
	ExpiredURL      string
	HasPassword     bool // edit: the link has one now
	RemovePassword  bool // edit: the box to remove it, as submitted
	Error           string
}

// Statuses is the select's options, for the template.
func (linkForm) Statuses() []int { return redirectStatuses }

// newForm is the create form's initial state: the links module's defaults.
func newForm() linkForm { return linkForm{RedirectStatus: 302, ForwardQuery: true} }

// editForm is the edit form filled from l.
func editForm(l links.Link) linkForm {
	f := linkForm{URL: l.OriginalURL, Tags: strings.Join(l.Tags, ", "), RedirectStatus: l.RedirectStatus,
		ForwardQuery: l.ForwardQuery, HasPassword: l.HasPassword}
	if l.ExpiredURL != nil {
		f.ExpiredURL = *l.ExpiredURL
	}
	if l.ExpiresAt != nil {
		f.ExpiresAt = l.ExpiresAt.UTC().Format(formTime)
	}
	if l.MaxClicks != nil {
		f.MaxClicks = strconv.FormatInt(*l.MaxClicks, 10)
	}
	return f
}

// readForm reads the fields shared by the create and edit forms from v, which comes
// from anyone's browser: it keeps what was typed in f for showing again and returns
// the parsed values, or a 400 problem naming the field that cannot be read. Values are
// only parsed here; the links module validates them.
func readForm(v url.Values) (f linkForm, n links.NewLink, err error) {
	f = linkForm{
		URL: strings.TrimSpace(v.Get("url")), Slug: strings.TrimSpace(v.Get("slug")), Tags: v.Get("tags"),
		Domain:    strings.TrimSpace(v.Get("domain")),
		ExpiresAt: strings.TrimSpace(v.Get("expires_at")), MaxClicks: strings.TrimSpace(v.Get("max_clicks")),
		ExpiredURL: strings.TrimSpace(v.Get("expired_url")), RedirectStatus: 302, ForwardQuery: true,
	}
	// The checkbox follows a hidden "0": a form without the field at all keeps the default.
	if fq, ok := v["forward_query"]; ok {
		f.ForwardQuery = len(fq) > 0 && fq[len(fq)-1] == "1"
	}
	forward, expiredURL := f.ForwardQuery, f.ExpiredURL
	n = links.NewLink{URL: f.URL, Slug: f.Slug, Domain: f.Domain, Tags: parseTags(f.Tags), Password: v.Get("password"),
		ForwardQuery: &forward, ExpiredURL: &expiredURL, RedirectStatus: 302}
	if s := strings.TrimSpace(v.Get("redirect_status")); s != "" {
		code, cerr := strconv.Atoi(s)
		if cerr != nil {
			return f, n, problem.Invalid("redirect status must be one of 301, 302, 303, 307, 308")
		}
		f.RedirectStatus, n.RedirectStatus = code, code
	}
	if f.ExpiresAt != "" {
		t, perr := parseFormTime(f.ExpiresAt)
		if perr != nil {
			return f, n, perr
		}
		n.ExpiresAt = &t
	}
	if f.MaxClicks != "" {
		m, perr := strconv.ParseInt(f.MaxClicks, 10, 64)
		if perr != nil {
			return f, n, problem.Invalid("click limit must be a whole number, or empty for none")
		}
		n.MaxClicks = &m
	}
	return f, n, nil
}

// parseFormTime reads a datetime-local value (seconds optional) as UTC.
func parseFormTime(s string) (time.Time, error) {
	for _, layout := range []string{formTime, formTime + ":05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, problem.Invalid("expiry must be a date and time like 2030-01-02T15:04 (UTC), or empty for none")
}

// readEditForm reads the edit form: the shared fields, and the password to set, keep
// (blank) or remove (the remove_password box). The form shows every setting, so the
// patch sets every one, except an expiry left as the form showed it: the form shows it
// to the minute, so sending it back would move it (a link expiring at 10:00:30 would
// expire at 10:00), and an expired link could not be edited at all, since an expiry
// must be in the future.
func readEditForm(v url.Values, l links.Link) (linkForm, links.Patch, error) {
	f, n, err := readForm(v)
	f.Slug, f.Domain, f.HasPassword = "", "", l.HasPassword
	f.RemovePassword = v.Get("remove_password") == "1"
	tags := n.Tags
	if tags == nil {
		tags = []string{}
	}
	p := links.Patch{URL: &n.URL, RedirectStatus: &n.RedirectStatus, MaxClicks: &n.MaxClicks,
		Tags: &tags, ForwardQuery: n.ForwardQuery, ExpiredURL: &n.ExpiredURL}
	if f.ExpiresAt != editForm(l).ExpiresAt {
		p.ExpiresAt = &n.ExpiresAt
	}
	switch {
	case f.RemovePassword:
		p.Password = new(string)
	case n.Password != "":
		p.Password = &n.Password
	}
	return f, p, err
}
