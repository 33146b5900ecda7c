package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/internal/redistest"
)

func client(t *testing.T, s *redistest.Server) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableIdentity = true
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStartAnswersAndIsPrivate(t *testing.T) {
	t.Parallel()
	a := redistest.Start(t)
	b := redistest.Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers share %s", a.Addr())
	}
	ctx := context.Background()
	ca, cb := client(t, a), client(t, b)
	if err := ca.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cb.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("server b sees server a's key: %v", err)
	}
}

func TestRestartKeepsAppendOnlyData(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.AppendOnly())
	c := client(t, s)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v1" {
		t.Fatalf("after Restart: %q, %v; want v1", got, err)
	}
	if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if s.Running() {
		t.Fatal("Running after Kill")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded while the server is killed")
	}
	s.Restart()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v2" {
		t.Fatalf("after Kill and Restart: %q, %v; want v2 (appendfsync always)", got, err)
	}
}

func TestWithoutAppendOnlyRestartForgets(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	c := client(t, s)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if err := c.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("key survived a restart without persistence: %v", err)
	}
}

func TestKillClientsCutsPubSub(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	c := client(t, s)
	ctx := context.Background()
	ps := c.Subscribe(ctx, "ch")
	defer ps.Close()
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := s.KillPubSubClients(); n != 1 {
		t.Fatalf("KillPubSubClients cut %d connections, want 1", n)
	}
	// The next receive sees the broken link.
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err == nil {
		t.Fatal("receive on a killed pub/sub connection succeeded")
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n := s.KillClients(); n < 1 {
		t.Fatalf("KillClients cut %d connections, want at least the pool's one", n)
	}
}

func TestStopIsIdempotent(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	s.Stop()
	s.Stop()
	s.Kill()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("Do succeeded on a stopped server")
	}
}

func BenchmarkPing(b *testing.B) {
	s := redistest.Start(b)
	opt, _ := redis.ParseURL(s.URL())
	c := redis.NewClient(opt)
	defer c.Close()
	ctx := context.Background()
	for b.Loop() {
		if err := c.Ping(ctx).Err(); err != nil {
			b.Fatal(err)
		}
	}
}
