package retrieve

import (
	"net/http"
	"sync"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/feed"
)

// Content types of the answers.
const (
	ContentTypeJSON = "application/json; charset=utf-8"
	ContentTypeAtom = "application/atom+xml; charset=utf-8"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Render writes a retrieve answer as the request asked: JSON, JSONP or Atom.
func Render(w http.ResponseWriter, req Request, n *feed.Notification, hubURL string) {
	bp := bufPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 1<<20 {
			bufPool.Put(bp)
		}
	}()
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	if n.Status.Gap {
		h.Set("Feedgate-Gap", "true")
	}
	if req.Format == Atom {
		*bp = feed.AppendAtom((*bp)[:0], n, n.Status.Feed, hubURL)
		h.Set("Content-Type", ContentTypeAtom)
		w.WriteHeader(http.StatusOK)
		w.Write(*bp)
		return
	}
	*bp = feed.AppendJSON((*bp)[:0], n)
	if req.Callback != "" {
		api.WriteJSONP(w, req.Callback, *bp)
		return
	}
	h.Set("Content-Type", ContentTypeJSON)
	w.WriteHeader(http.StatusOK)
	*bp = append(*bp, '\n')
	w.Write(*bp)
}

// Header values of cached answers, shared (net/http only reads them).
var (
	noCache  = []string{"no-cache"}
	jsonType = []string{ContentTypeJSON}
	atomType = []string{ContentTypeAtom}
)

// writeAnswer writes an encoded answer (the JSON with its newline, or the
// Atom document), shared and never modified, as req asks.
func writeAnswer(w http.ResponseWriter, req Request, a encoded) {
	h := w.Header()
	h["Cache-Control"] = noCache
	if req.Callback != "" && req.Format != Atom {
		api.WriteJSONP(w, req.Callback, a.body[:len(a.body)-1])
		return
	}
	if req.Format == Atom {
		h["Content-Type"] = atomType
	} else {
		h["Content-Type"] = jsonType
	}
	h["Content-Length"] = a.length
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.body)
}
