package app

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"
)

// openAPIYAML is the OpenAPI 3.1 document of hop's HTTP API, kept as YAML for people
// to read and edit; app/openapi_test.go holds it to the router and to real responses.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// openAPIJSON converts the document to the JSON served at /openapi.json.
func openAPIJSON() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openAPIYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml as JSON: %w", err)
	}
	return b, nil
}

// openAPIHandler serves the document as JSON, converted once.
func openAPIHandler() (echo.HandlerFunc, error) {
	doc, err := openAPIJSON()
	if err != nil {
		return nil, err
	}
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "public, max-age=300")
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc)
	}, nil
}
