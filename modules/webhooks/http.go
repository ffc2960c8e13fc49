package webhooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

// Routes registers the webhook API on g (already authenticated).
func (s *Service) Routes(g *echo.Group) {
	g.POST("/webhooks", s.handleCreate)
	g.GET("/webhooks", s.handleList)
	g.GET("/webhooks/:id", s.handleGet)
	g.DELETE("/webhooks/:id", s.handleDelete)
	g.GET("/webhooks/:id/deliveries", s.handleDeliveries)
	g.POST("/webhooks/:id/test", s.handleTest)
	g.POST("/webhooks/:id/deliveries/:delivery/retry", s.handleRetry)
}

// createRequest is the body of POST /webhooks.
type createRequest struct {
	URL         string    `json:"url"`
	Links       *[]string `json:"links"`
	Tags        *[]string `json:"tags"`
	Domain      *string   `json:"domain"`
	IncludeBots bool      `json:"include_bots"`
}

// decodeCreate reads and checks the shape of a create request.
func decodeCreate(r io.Reader) (createRequest, error) {
	var req createRequest
	dec := json.NewDecoder(io.LimitReader(r, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, problem.With(ErrInvalid, "body must be a JSON object with url, links, tags, domain and include_bots: %v", err)
	}
	if req.URL == "" {
		return req, problem.With(ErrInvalid, "url is required")
	}
	if _, err := parseURL(req.URL); err != nil {
		return req, err
	}
	check := func(name string, list *[]string, max int) error {
		if list == nil {
			return nil
		}
		if len(*list) == 0 || len(*list) > max {
			return problem.With(ErrInvalid, "%s must be null or a list of 1 to %d items", name, max)
		}
		for _, v := range *list {
			if v == "" || len(v) > 200 || strings.ContainsAny(v, "\x00\r\n") {
				return problem.With(ErrInvalid, "%s has an empty or malformed item", name)
			}
		}
		return nil
	}
	if err := check("links", req.Links, 1000); err != nil {
		return req, err
	}
	if err := check("tags", req.Tags, 100); err != nil {
		return req, err
	}
	if req.Domain != nil {
		d := strings.ToLower(strings.TrimSpace(*req.Domain))
		if d == "" || len(d) > 253 || strings.ContainsAny(d, "/:@ \x00") {
			return req, problem.With(ErrInvalid, "domain must be null or a host name")
		}
		req.Domain = &d
	}
	return req, nil
}

func (s *Service) handleCreate(c echo.Context) error {
	req, err := decodeCreate(c.Request().Body)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if _, err := s.guard.check(ctx, req.URL); err != nil {
		return err
	}
	w := Webhook{URL: req.URL, Domain: req.Domain, IncludeBots: req.IncludeBots}
	var slugs []string
	if req.Links != nil {
		slugs = *req.Links
		if w.linkIDs, err = s.linkIDs(ctx, slugs); err != nil {
			return err
		}
	}
	if req.Tags != nil {
		w.Tags = *req.Tags
	}
	secret, err := newSecret()
	if err != nil {
		return err
	}
	if w.sealed, err = s.seal(secret); err != nil {
		return err
	}
	created, err := s.insert(ctx, w, slugs)
	if err != nil {
		return err
	}
	created.Secret = secret
	s.Wake()
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
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 100 {
			return problem.Invalid("limit must be between 1 and 100")
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
	ctx := c.Request().Context()
	w, err := s.get(ctx, id)
	if err != nil {
		return err
	}
	eid, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("make ping id: %w", err)
	}
	body, err := json.Marshal(Payload{Events: []Event{{Type: "ping", ID: eid, ClickedAt: s.cfg.Now().UTC().Truncate(time.Millisecond)}}})
	if err != nil {
		return fmt.Errorf("encode ping: %w", err)
	}
	d, err := s.insertDelivery(ctx, w.ID, "ping", body, 1, nil)
	if err != nil {
		return err
	}
	return s.answerAttempt(c, w, d)
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
	ctx := c.Request().Context()
	w, err := s.get(ctx, id)
	if err != nil {
		return err
	}
	d, err := s.delivery(ctx, id, did)
	if err != nil {
		return err
	}
	return s.answerAttempt(c, w, d)
}

func (s *Service) answerAttempt(c echo.Context, w Webhook, d Delivery) error {
	ctx := c.Request().Context()
	if _, err := s.attempt(ctx, w, d, true); err != nil {
		return err
	}
	d, err := s.delivery(ctx, w.ID, d.ID)
	if errors.Is(err, ErrNoDelivery) {
		return ErrNotFound // the webhook was deleted meanwhile
	}
	if err != nil {
		return err
	}
	s.Wake()
	return c.JSON(http.StatusOK, d)
}
