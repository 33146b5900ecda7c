package admin

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/feedgate/feedgate/api"
)

// The admin console: a page served by the admin listener at /admin/, plain
// HTML, CSS and JavaScript embedded in the binary (no build step, nothing
// fetched from elsewhere), driving the admin API.
//
//go:embed console
var consoleFiles embed.FS

// consoleHeader marks the console's requests: their 401s carry no Basic
// challenge, so the browser never prompts for, nor keeps, credentials of
// its own for the admin origin.
const consoleHeader = "X-Feedgate-Console"

// consolePolicy is the console's Content-Security-Policy: its own scripts,
// styles and API only.
const consolePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// RegisterConsole adds the console's page (/admin/) and files to mux.
func (a *API) RegisterConsole(mux Mux) {
	sub, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	files := http.StripPrefix("/admin", http.FileServerFS(sub))
	serve := func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consolePolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /admin/{$}", serve)
	mux.HandleFunc("GET /admin/{file}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("file") == "index.html" {
			// The file server would redirect it to /admin/.
			http.Redirect(w, r, "./", http.StatusMovedPermanently)
			return
		}
		serve(w, r)
	})
	mux.HandleFunc("GET /admin", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/", http.StatusMovedPermanently)
	})
}

// withoutChallenge drops the Basic challenge of a 401 (see consoleHeader).
func withoutChallenge(err error) error {
	ae, ok := api.AsError(err)
	if !ok || ae.Header.Get("WWW-Authenticate") == "" {
		return err
	}
	c := *ae
	c.Header = ae.Header.Clone()
	c.Header.Del("WWW-Authenticate")
	return &c
}
