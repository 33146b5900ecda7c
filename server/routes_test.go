package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/feedgate/feedgate/api"
)

type noCallbacks struct{}

func (noCallbacks) Callback(http.ResponseWriter, *http.Request) {}

// TestRoutesDescribed lists the routes of the public listener's engine
// and checks them against api/openapi.yaml both ways: a route the
// description lacks, or a public operation the engine does not route,
// fails. (The browser assets are served past the engine; the answers
// themselves are checked by cmd/gateway's TestOpenAPI.)
func TestRoutesDescribed(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := engine(Config{Role: RoleAll, Callback: noCallbacks{}})
	routed := map[string]bool{}
	for _, r := range e.Routes() {
		path := r.Path
		if i := strings.Index(path, "/:"); i >= 0 {
			path = path[:i+1] + "{" + path[i+2:] + "}"
		}
		routed[r.Method+" "+path] = true
		item := doc.Paths.Find(path)
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("the engine routes %s %s, which api/openapi.yaml does not describe", r.Method, path)
		}
	}
	for path, item := range doc.Paths.Map() {
		if !public(item) {
			continue
		}
		for method, op := range item.Operations() {
			if len(op.Tags) == 1 && op.Tags[0] == "browser" {
				continue
			}
			if !routed[method+" "+path] {
				t.Errorf("api/openapi.yaml describes %s %s, which the engine does not route", method, path)
			}
		}
	}
}

// public reports whether the public listener serves a path item.
func public(item *openapi3.PathItem) bool {
	if len(item.Servers) == 0 {
		return true
	}
	for _, s := range item.Servers {
		if strings.Contains(s.URL, "{host}") {
			return true
		}
	}
	return false
}
