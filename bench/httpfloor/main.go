// Command httpfloor is the floor of a retrieve over net/http on this
// machine: a net/http server that answers every GET with the same bytes a
// retrieve of the bench topic answers (fetched once from a gateway), with
// no routing, authentication, parsing or cache. loadgen's retrieve run
// against it shows what net/http and the kernel cost per request, to
// compare the gateway's retrieve (and raw Redis) with:
//
//	httpfloor --listen 127.0.0.1:9001 --from 'http://127.0.0.1:8080/?hub.mode=retrieve&...' --auth bench:TOKEN
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/feedgate/feedgate/server"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to serve on (loopback)")
	from := flag.String("from", "", "URL whose answer is served (a gateway retrieve)")
	creds := flag.String("auth", "", "login:token for --from")
	coalesce := flag.Bool("coalesce", false, "hold each response's writes and send them in one write(2) when it is complete")
	flag.Parse()
	if err := run(*listen, *from, *creds, *coalesce); err != nil {
		fmt.Fprintln(os.Stderr, "httpfloor:", err)
		os.Exit(1)
	}
}

func run(listen, from, creds string, coalesce bool) error {
	if from == "" {
		return fmt.Errorf("--from is required")
	}
	req, err := http.NewRequest(http.MethodGet, from, nil)
	if err != nil {
		return err
	}
	if login, token, ok := strings.Cut(creds, ":"); ok {
		req.SetBasicAuth(login, token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("--from answered %d: %s", resp.StatusCode, body)
	}
	ctype := resp.Header.Get("Content-Type")
	length := strconv.Itoa(len(body))
	fmt.Printf("serving %d bytes (%s) on %s\n", len(body), ctype, listen)
	srv := &http.Server{
		Addr:              listen,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Cache-Control", "no-cache")
			h.Set("Content-Type", ctype)
			h.Set("Content-Length", length)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
		}),
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if coalesce {
		ln, srv.ConnState = server.Corked(ln), server.CorkState(nil)
	}
	return srv.Serve(ln)
}
