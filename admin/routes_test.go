package admin_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/feedgate/feedgate/admin"
	"github.com/feedgate/feedgate/api"
)

type recorder []string

func (r *recorder) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	*r = append(*r, pattern)
}

// TestRoutesDescribed checks the admin API's routes against
// api/openapi.yaml both ways: a route the description lacks, or an
// operation under /admin/api/ that is not routed, fails. (The answers
// are checked by cmd/gateway's TestOpenAPI.)
func TestRoutesDescribed(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	(&admin.API{}).Register(&rec)
	routed := map[string]bool{}
	for _, p := range rec {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			continue // the catch-all answering 404 under /admin/api/
		}
		item := doc.Paths.Find(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("the admin API routes %s, which api/openapi.yaml does not describe", p)
			continue
		}
		for tmpl, it := range doc.Paths.Map() {
			if it == item {
				routed[method+" "+tmpl] = true
			}
		}
	}
	if len(routed) == 0 {
		t.Fatal("no admin route recorded")
	}
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, "/admin/api/") {
			continue
		}
		for method := range item.Operations() {
			if !routed[method+" "+path] {
				t.Errorf("api/openapi.yaml describes %s %s, which the admin API does not route", method, path)
			}
		}
	}
}
