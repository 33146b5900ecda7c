// Command profgw serves feedgate's hub endpoint wired as `gateway serve`
// wires it (store, auth, retrieve, hub, fat pings, streams and long-polls;
// no background ingest), plus net/http/pprof on a second loopback port, so
// load runs can be profiled:
//
//	profgw --listen 127.0.0.1:8080 --pprof 127.0.0.1:6060 [--redis-url URL | --data-dir DIR]
//	go tool pprof -top 'http://127.0.0.1:6060/debug/pprof/profile?seconds=10'
//
// It prints the token of a new user `bench` (every right) on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/internal/loadgen"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/server"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
	redisstore "github.com/feedgate/feedgate/store/redis"
	"github.com/feedgate/feedgate/stream"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "hub endpoint address (loopback)")
	pprofAddr := flag.String("pprof", "127.0.0.1:6060", "pprof address (loopback)")
	redisURL := flag.String("redis-url", "", "Redis store (empty: embedded store in --data-dir)")
	dataDir := flag.String("data-dir", "./profgw-data", "embedded store directory")
	flag.Parse()
	if err := run(*listen, *pprofAddr, *redisURL, *dataDir); err != nil {
		fmt.Fprintln(os.Stderr, "profgw:", err)
		os.Exit(1)
	}
}

func run(listen, pprofAddr, redisURL, dataDir string) error {
	for _, a := range []string{listen, pprofAddr} {
		if _, err := loadgen.CheckLoopbackAddr(a); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	changes := new(store.ChangeHook)
	opts := store.Options{Retention: 1000, Changes: changes}
	var st store.Store
	var err error
	if redisURL != "" {
		st, err = redisstore.New(ctx, redisURL, opts)
	} else {
		st, err = embedded.Open(dataDir, opts)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	is, ok := st.(store.IngestStore)
	if !ok {
		return errors.New("the store does not keep ingest state")
	}
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "bench", Rights: store.AllRights})
	if err != nil {
		return fmt.Errorf("creating user bench (use a fresh store): %w", err)
	}
	public := "http://" + listen
	reg := prometheus.NewRegistry()
	ing, err := ingest.New(st, is, ingest.Options{PublicURL: public, AllowPrivate: true, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	cache := retrieve.NewCache(ctx, st, retrieve.CacheOptions{Count: 50, Changes: changes, Registerer: reg, Logger: log})
	defer cache.Close()
	rs := retrieve.New(st, public+"/", retrieve.Limits{MaxCount: 50, DefaultTimeout: 30 * time.Second, MaxTimeout: 120 * time.Second}, retrieve.WithCache(cache))
	broker, err := stream.New(st, rs, stream.Options{Registry: reg, Logger: log})
	if err != nil {
		return err
	}
	defer broker.Close()
	handler := server.New(server.Config{
		Role: server.RoleAll, Store: st, Auth: auth.NewAuthenticator(st, 5*time.Second), Retrieve: rs,
		Hub: hub.New(st, ing), Publish: ing, Live: broker, Callback: ing,
		MaxBody: 10 << 20, Registry: reg, Logger: log,
	})

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	pln, err := net.Listen("tcp", pprofAddr)
	if err != nil {
		return err
	}
	go http.Serve(pln, mux)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go srv.Serve(ln)
	fmt.Println(token)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = broker.Shutdown(sctx)
	_ = srv.Shutdown(sctx)
	pln.Close()
	return nil
}
