package ingest

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedgate/feedgate/internal/memnet"
)

// bubble is the world of a test run inside synctest.Test: its HTTP servers
// and the nodes' requests go over an in-memory network, and time is the
// bubble's clock, so the test can say exactly when things happen, and
// synctest.Wait returns once every goroutine has done all it can do now.
type bubble struct {
	t   testing.TB
	net *memnet.Network
}

func newBubble(t testing.TB) *bubble {
	return &bubble{t: t, net: memnet.New()}
}

// serve serves h on the in-memory network and returns its base URL.
func (b *bubble) serve(h http.Handler) string { return b.net.Serve(b.t, h) }

// startNode starts a node whose callbacks and fetches go over the network.
func (b *bubble) startNode(st backend, opts Options, run bool) *node {
	b.t.Helper()
	opts.Fetch.Dial = b.net.Dial
	return startNodeOn(b.t, st, opts, run, b.serve)
}

// newHub starts a test hub on the network.
func (b *bubble) newHub() *testHub {
	c := b.net.Client()
	b.t.Cleanup(c.CloseIdleConnections)
	return newTestHubOn(b.t, b.serve, c)
}

// idleFor lets d of bubble time pass and returns once everything that was
// due meanwhile has been done.
func (b *bubble) idleFor(d time.Duration) {
	synctest.Wait()
	time.Sleep(d)
	synctest.Wait()
}
