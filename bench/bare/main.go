// Command bare is the redirect benchmark's baseline: a bare Echo v4 server that answers
// GET /:slug with a 302 and the same headers hop sends, and does nothing else.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/:slug", func(c echo.Context) error {
		h := c.Response().Header()
		h["Location"] = []string{"https://example.com/landing/" + c.Param("slug")}
		h["Cache-Control"] = []string{"no-store"}
		c.Response().WriteHeader(http.StatusFound)
		return nil
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on %s", ln.Addr())
	log.Fatal((&http.Server{Handler: e}).Serve(ln))
}
