// Command feed-server serves the files of a directory over HTTP, as a
// publisher's web server would, to try feedgate's polling on one machine.
// Files carry Last-Modified, so the gateway's conditional fetches are
// answered 304 Not Modified while a feed does not change.
//
//	go run ./examples/feed-server -listen 127.0.0.1:8000 -dir site
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address to listen on")
	dir := flag.String("dir", ".", "directory to serve")
	flag.Parse()
	log.SetFlags(0)
	srv := &http.Server{Addr: *listen, Handler: http.FileServer(http.Dir(*dir)), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("serving %s on http://%s/", *dir, *listen)
	log.Fatal(srv.ListenAndServe())
}
