package webhooks

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/jsonbody"
	"github.com/hop-dev/hop/internal/problem"
)

// Routes registers the webhook API on g behind mw, which authenticates.
func (s *Service) Routes(g *echo.Group, mw ...echo.MiddlewareFunc) {
	get := []string{http.MethodGet, http.MethodHead}
	g.POST("/webhooks", s.handleCreate, mw...)
	g.Match(get, "/webhooks", s.handleList, mw...)
	g.Match(get, "/webhooks/:id", s.handleGet, mw...)
	g.PATCH("/webhooks/:id", s.handleUpdate, mw...)
	g.DELETE("/webhooks/:id", s.handleDelete, mw...)
	g.POST("/webhooks/:id/secret", s.handleRotate, mw...)
	g.Match(get, "/webhooks/:id/deliveries", s.handleDeliveries, mw...)
	g.POST("/webhooks/:id/test", s.handleTest, mw...)
	g.POST("/webhooks/:id/deliveries/:delivery/retry", s.handleRetry, mw...)
}

// createRequest is the body of POST /webhooks.
type createRequest struct {
	URL         string    `json:"url"`
	Links       *[]string `json:"links"`
	Tags        *[]string `json:"tags"`
	Domain      *string   `json:"domain"`
	IncludeBots bool      `json:"include_bots"`
}

// decodeCreate reads and checks a create request's body.
func decodeCreate(r io.Reader) (NewWebhook, error) {
	var req createRequest
	if err := jsonbody.Read(io.LimitReader(r, 64<<10), &req, true); err != nil {
		return NewWebhook{}, err
	}
	return req.webhook()
}

// webhook checks req and turns it into what a webhook is created with.
func (req createRequest) webhook() (NewWebhook, error) {
	n := NewWebhook{URL: req.URL, Domain: req.Domain, IncludeBots: req.IncludeBots}
	// An empty list stays non-nil, so check refuses it rather than reading it as "all".
	if req.Links != nil {
		n.Links = append([]string{}, *req.Links...)
	}
	if req.Tags != nil {
		n.Tags = append([]string{}, *req.Tags...)
	}
	return n, n.check()
}

func (s *Service) handleCreate(c echo.Context) error {
	// Decode, not decodeCreate: a body that is not sent as JSON is refused (415), as on
	// every other route that takes one.
	var req createRequest
	if err := jsonbody.Decode(c, &req, true); err != nil {
		return err
	}
	n, err := req.webhook()
	if err != nil {
		return err
	}
	created, err := s.Create(c.Request().Context(), n)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/webhooks/"+strconv.FormatInt(created.ID, 10))
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store") // it carries the secret
	return c.JSON(http.StatusCreated, created)
}

func (s *Service) handleList(c echo.Context) error {
	hooks, err := s.list(c.Request().Context(), false)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"webhooks": hooks})
}

func parseID(v string, notFound error) (int64, error) {
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, problem.With(notFound, "no such id %q", v)
	}
	return id, nil
}

func (s *Service) handleGet(c echo.Context) error {
	id, err := parseID(c.Param("id"), ErrNotFound)
	if err != nil {
		return err
	}
	w, err := s.get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, w)
}

// patchable lists the fields PATCH takes, in the order its error names them.
var patchable = []string{"url", "links", "tags", "domain", "include_bots"}

// decodeChange reads a PATCH body: the fields it has change, null meaning "every one"
// for links, tags and domain, as at creation.
func decodeChange(raw map[string]json.RawMessage) (Change, error) {
	var ch Change
	if len(raw) == 0 {
		return ch, problem.With(ErrInvalid, "the body must change at least one of %s", strings.Join(patchable, ", "))
	}
	for k := range raw {
		if !slices.Contains(patchable, k) {
			return ch, problem.With(ErrInvalid, "unknown field %q; a webhook's %s can be changed", k, strings.Join(patchable, ", "))
		}
	}
	isNull := func(name string) bool { return string(raw[name]) == "null" }
	var err error
	field := func(name string, v any) {
		if err == nil {
			err = jsonbody.Field(name, raw[name], v)
		}
	}
	if _, ok := raw["url"]; ok {
		if isNull("url") {
			return ch, problem.With(ErrInvalid, "url cannot be null")
		}
		ch.URL = new(string)
		field("url", ch.URL)
	}
	if _, ok := raw["include_bots"]; ok {
		if isNull("include_bots") {
			return ch, problem.With(ErrInvalid, "include_bots cannot be null; send true or false")
		}
		ch.IncludeBots = new(bool)
		field("include_bots", ch.IncludeBots)
	}
	if _, ch.SetLinks = raw["links"]; ch.SetLinks {
		field("links", &ch.Links)
	}
	if _, ch.SetTags = raw["tags"]; ch.SetTags {
		field("tags", &ch.Tags)
	}
	if _, ch.SetDomain = raw["domain"]; ch.SetDomain {
		field("domain", &ch.Domain)
	}
	// An empty list stays non-nil, so check refuses it rather than reading it as "all".
	if ch.SetLinks && ch.Links == nil && !isNull("links") {
		ch.Links = []string{}
	}
	if ch.SetTags && ch.Tags == nil && !isNull("tags") {
		ch.Tags = []string{}
	}
	return ch, err
}

// handleUpdate answers PATCH /webhooks/{id} with the webhook as changed.
func (s *Service) handleUpdate(c echo.Context) error {
	id, err := parseID(c.Param("id"), ErrNotFound)
	if err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := jsonbody.Decode(c, &raw, false); err != nil {
		return err
	}
	ch, err := decodeChange(raw)
	if err != nil {
		return err
	}
	w, err := s.Update(c.Request().Context(), id, ch)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, w)
}

// handleRotate answers POST /webhooks/{id}/secret with the webhook and its new
// signing secret, shown this once.
func (s *Service) handleRotate(c echo.Context) error {
	id, err := parseID(c.Param("id"), ErrNotFound)
	if err != nil {
		return err
	}
	w, err := s.RotateSecret(c.Request().Context(), id)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store") // it carries the secret
	return c.JSON(http.StatusOK, w)
}

func (s *Service) handleDelete(c echo.Context) error {
	id, err := parseID(c.Param("id"), ErrNotFound)
	if err != nil {
		return err
	}
	if err := s.delete(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Service) handleDeliveries(c echo.Context) error {
	id, err := parseID(c.Param("id"), ErrNotFound)
	if err != nil {
		return err
	}
	limit := 20
	if v := c.QueryParam("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxListed {
			return problem.Invalid("limit must be between 1 and %d", MaxListed)
		}
	}
	ds, err := s.deliveries(c.Request().Context(), id, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"deliveries": ds})
}

// handleTest sends a ping event now and answers with the delivery as recorded.
func (s *Service) handleTest(c echo.Context) error {
	id, err := parseID(c.Param("id"), ErrNotFound)
	if err != nil {
		return err
	}
	d, err := s.Ping(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// handleRetry sends a delivery again now (a failed batch, typically) and answers with
// it as recorded.
func (s *Service) handleRetry(c echo.Context) error {
	id, err := parseID(c.Param("id"), ErrNotFound)
	if err != nil {
		return err
	}
	did, err := parseID(c.Param("delivery"), ErrNoDelivery)
	if err != nil {
		return err
	}
	d, err := s.Retry(c.Request().Context(), id, did)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}
