package api

import (
	_ "embed"
	"net/http"
	"strconv"
)

// OpenAPI is the OpenAPI 3.1 description of the gateway's HTTP API: the
// hub endpoint with every mode and its streaming forms, the upstream
// callbacks, health and assets, and the admin API of the admin listener.
//
//go:embed openapi.yaml
var OpenAPI []byte

// ServeOpenAPI answers with the description (GET /openapi.yaml on both
// listeners). Any origin may read it (API explorers load it cross-origin).
func ServeOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Content-Length", strconv.Itoa(len(OpenAPI)))
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(OpenAPI)
}
