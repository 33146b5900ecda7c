// Command gateway runs feedgate: `gateway serve` (the default) and
// `gateway user add|list|remove`, `gateway config check`, `gateway version`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cli CLI
	k := kong.Parse(&cli, kong.Name("gateway"), kong.UsageOnError(),
		kong.Description("feedgate: a real-time feed gateway (WebSub hub, streams, SSE, WebSocket, long-poll, webhooks)."),
		kong.Configuration(loadYAMLConfig),
		kong.Vars{"version": versionLine()},
		kong.BindTo(ctx, (*context.Context)(nil)))
	k.FatalIfErrorf(k.Run())
}
