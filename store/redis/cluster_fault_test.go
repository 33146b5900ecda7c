package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/clusterslot"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

// faultOptions keep every item the fault tests publish, so that a listener
// that is down for seconds (while thousands of items are published) finds
// them all when it re-reads.
var faultOptions = store.Options{Retention: 1 << 20}

// publisher appends one item at a time to a topic, as a publisher whose
// fat pings get 503 would: each item is retried until it is acknowledged
// (appends are idempotent), and every acknowledgement is recorded.
type publisher struct {
	s     store.Store
	topic string

	mu       sync.Mutex
	acked    map[string]feed.Cursor // item id -> cursor, once acknowledged
	order    []string
	failures int
	lastErr  error
	lastOK   time.Time
	firstBad time.Time // first failure of the current outage
	outages  []time.Duration
}

func newPublisher(s store.Store, topic string) *publisher {
	return &publisher{s: s, topic: topic, acked: make(map[string]feed.Cursor)}
}

// run publishes until ctx ends.
func (p *publisher) run(ctx context.Context) {
	for i := 1; ctx.Err() == nil; i++ {
		it := feed.Item{ID: fmt.Sprintf("p%05d", i), Title: "item", Content: "<p>x</p>", Hash: "h"}
		for ctx.Err() == nil {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			got, err := p.s.Append(actx, p.topic, []feed.Item{it})
			cancel()
			p.mu.Lock()
			if err == nil {
				if !p.firstBad.IsZero() {
					p.outages = append(p.outages, time.Since(p.firstBad))
					p.firstBad = time.Time{}
				}
				p.lastOK = time.Now()
				if len(got) == 1 {
					p.acked[it.ID] = got[0].Cursor
				} else {
					// Stored by an earlier attempt that was not
					// acknowledged; it is acknowledged now.
					p.acked[it.ID] = 0
				}
				p.order = append(p.order, it.ID)
				p.mu.Unlock()
				break
			}
			p.failures++
			p.lastErr = err
			if p.firstBad.IsZero() {
				p.firstBad = time.Now()
			}
			p.mu.Unlock()
			if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrNotReplicated) && ctx.Err() == nil {
				panic(fmt.Sprintf("append failed with an error that is not a 503: %v", err))
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// count is how many items were acknowledged.
func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.order)
}

// waitMore waits until n more items are acknowledged than now.
func (p *publisher) waitMore(t *testing.T, n int, within time.Duration, what string) {
	t.Helper()
	want := p.count() + n
	deadline := time.Now().Add(within)
	for p.count() < want {
		if time.Now().After(deadline) {
			p.mu.Lock()
			err := p.lastErr
			p.mu.Unlock()
			t.Fatalf("%s: %d of %d more appends acknowledged within %v (last error: %v)", what, p.count()-want+n, n, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check verifies that every acknowledged item is stored, and that the
// follower learnt of each exactly once.
func (p *publisher) check(t *testing.T, f *follower) {
	t.Helper()
	stored := make(map[string]feed.Cursor)
	for after := feed.Cursor(0); ; {
		page, err := p.s.Read(ctxT(t), p.topic, store.Query{From: store.After, Cursor: after, Count: 1000})
		if err != nil {
			t.Fatalf("final Read: %v", err)
		}
		if page.Gap {
			t.Fatalf("final Read after %d: a gap (the retention is too small for the test)", after)
		}
		if len(page.Items) == 0 {
			break
		}
		for _, it := range page.Items {
			stored[it.ID] = it.Cursor
		}
		after = page.Items[0].Cursor
	}
	seen := make(map[feed.Cursor]int)
	for _, c := range f.seen {
		seen[c]++
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range p.order {
		c, ok := stored[id]
		if !ok {
			t.Errorf("acknowledged item %s is not stored after the fault", id)
			continue
		}
		if want := p.acked[id]; want != 0 && want != c {
			t.Errorf("acknowledged item %s was stored at cursor %d, read at %d", id, want, c)
		}
		if seen[c] != 1 {
			t.Errorf("acknowledged item %s (cursor %d) reached the listener %d times, want once", id, c, seen[c])
		} else if f.ids[c] != id {
			t.Errorf("acknowledged item %s is at cursor %d, where the listener learnt of item %s (a cursor used twice)", id, c, f.ids[c])
		}
	}
	for c, n := range seen {
		if n > 1 {
			t.Errorf("cursor %d reached the listener %d times", c, n)
		}
	}
	t.Logf("%d items acknowledged, %d failed attempts, outages %v, %d Resyncs", len(p.order), p.failures, p.outages, f.resync)
}

// follow consumes a listener into f until ctx ends, as the node hub does:
// batches in, Resync re-read from the last cursor. Errors go to errs. A
// batch taken is always dealt with whole (its re-read is not cut short by
// ctx), so that drain can carry on where follow stopped.
func follow(ctx context.Context, f *follower, errs chan<- error) {
	for {
		select {
		case <-ctx.Done():
			return
		case b, ok := <-f.l.Batches():
			if !ok {
				return
			}
			tctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := f.takeErr(tctx, b)
			cancel()
			if err != nil {
				errs <- err
				return
			}
		}
	}
}

// topicOnSlot returns a topic whose keys hash to slot.
func topicOnSlot(t *testing.T, s *redisstore.Store, slot int) string {
	t.Helper()
	for i := 0; i < 1<<22; i++ {
		topic := fmt.Sprintf("https://example.com/slot/%d.xml", i)
		if clusterslot.Of(redisstore.ItemsKey(s, topic)) == slot {
			return topic
		}
	}
	t.Fatalf("no topic found on slot %d", slot)
	return ""
}

// fault is what publishThrough does to the Redis set-up in the middle of a
// run, and how its waits and checks name it.
type fault struct {
	before, after string // the two rounds of 20 acknowledged items
	resync        string // what the Resync check says happened
	cause         func() // after the first round
	recovered     func() // if set, once the second round is acknowledged
}

// publishThrough follows topic on s with l while items are published
// (appends with retries, as a publisher does), causes ft between two rounds
// of 20 acknowledged items, and then checks that every acknowledged item
// was stored and reached l exactly once, after at least one Resync.
func publishThrough(t *testing.T, s *redisstore.Store, l store.Listener, topic string, ft fault) {
	t.Helper()
	f := &follower{t: t, s: s, l: l, topic: topic}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { follow(ctx, f, errs) })
	p := newPublisher(s, topic)
	wg.Go(func() { p.run(ctx) })
	p.waitMore(t, 20, 10*time.Second, ft.before)
	ft.cause()
	p.waitMore(t, 20, 15*time.Second, ft.after)
	if ft.recovered != nil {
		ft.recovered()
	}
	testkit.Eventually(t, 10*time.Second, "the listener to be healthy", l.Healthy)
	cancel()
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	f.drain(t)
	p.check(t, f)
	if f.resync == 0 {
		t.Errorf("no Resync after %s", ft.resync)
	}
}

// TestClusterMasterKilled kills the master serving a streamed topic's slot
// with SIGKILL while items are published with WAIT 1: every acknowledged
// item is stored and reaches the listener exactly once, Ping names the
// dead shard until the failover, and publishing works again soon after.
func TestClusterMasterKilled(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	cfg := redisstore.Config{Cluster: c.Addrs(), WaitReplicas: 1}
	s := openConfig(t, cfg, faultOptions)
	defer s.Close()
	topic := "https://example.com/killed.xml"
	var old, now string
	var killed time.Time
	publishThrough(t, s, mustListen(t, s, topic), topic, fault{
		before: "before the kill", after: "after the failover", resync: "the topic's master was killed",
		cause: func() {
			old = c.MasterOf(redisstore.ItemsKey(s, topic))
			killed = time.Now()
			c.Kill(old)
			// Ping names the shard while it is down (until the failover).
			if err := s.Ping(ctxT(t)); err == nil || !strings.Contains(err.Error(), old) || !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Ping with %s killed = %v, want ErrUnavailable naming it", old, err)
			} else {
				t.Logf("Ping: %v", err)
			}
			now = c.WaitFailover(redisstore.ItemsKey(s, topic), old)
			// The old master comes back as the new master's replica, so
			// that WAIT 1 can be met again.
			c.Restart(old)
		},
		recovered: func() {
			t.Logf("failover %s -> %s; publishing again %v after the kill", old, now, time.Since(killed).Round(time.Millisecond))
			testkit.Eventually(t, 10*time.Second, "Ping to succeed after the failover", func() bool { return s.Ping(ctxT(t)) == nil })
		},
	})
}

// TestClusterReshard moves a streamed topic's slot to another master with
// redis-cli --cluster reshard while items are published: nothing is lost
// or doubled, and the listener follows the slot (SUNSUBSCRIBE, then a
// Resync naming the topic).
func TestClusterReshard(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	s := openConfig(t, redisstore.Config{Cluster: c.Addrs()}, faultOptions)
	defer s.Close()
	masters := c.Masters()
	topic := topicOnSlot(t, s, c.FirstSlot(masters[0]))
	publishThrough(t, s, mustListen(t, s, topic), topic, fault{
		before: "before the reshard", after: "after the reshard", resync: "the topic's slot moved",
		cause: func() {
			c.Reshard(masters[0], masters[1], 1)
			if got := c.MasterOf(redisstore.ItemsKey(s, topic)); got != masters[1] {
				t.Fatalf("after the reshard the topic is served by %s, want %s", got, masters[1])
			}
		},
	})
}

// TestSentinelMasterKilled is TestClusterMasterKilled on Sentinel.
func TestSentinelMasterKilled(t *testing.T) {
	t.Parallel()
	sb := redistest.StartSentinel(t)
	s := openConfig(t, redisstore.Config{Sentinel: sb.Addrs(), Master: redistest.SentinelMaster, WaitReplicas: 1}, faultOptions)
	t.Cleanup(func() { _ = s.Close() })
	topic := "https://example.com/sentinel.xml"
	l := mustListen(t, s, topic)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listener healthy %v, %d announcements read; the Sentinel set at the failure:\n%s",
				l.Healthy(), redisstore.Received(l), sb.State())
		}
	})
	var old, now string
	var killed time.Time
	publishThrough(t, s, l, topic, fault{
		before: "before the kill", after: "after the failover", resync: "the master was killed",
		cause: func() {
			killed = time.Now()
			old = sb.KillMaster()
			now = sb.WaitFailover(old)
		},
		recovered: func() {
			t.Logf("failover %s -> %s; publishing again %v after the kill", old, now, time.Since(killed).Round(time.Millisecond))
		},
	})
}

// TestWaitReplicasUnmet: with WAIT 1 and no replica, an append fails with
// ErrNotReplicated within about the wait timeout, and so does its retry;
// the item is stored once on the master all the same.
func TestWaitReplicasUnmet(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openConfig(t, redisstore.Config{URL: srv.URL(), WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond}, faultOptions)
	defer s.Close()
	for attempt := 1; attempt <= 2; attempt++ {
		start := time.Now()
		_, err := s.Append(ctxT(t), topic, testItems("w", 1))
		if !errors.Is(err, store.ErrNotReplicated) || errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("attempt %d: Append without a replica = %v, want ErrNotReplicated", attempt, err)
		}
		if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
			t.Errorf("attempt %d failed after %v, want about the 200ms wait", attempt, d)
		}
		t.Logf("attempt %d: %v", attempt, err)
	}
	p, err := s.Read(ctxT(t), topic, store.Query{Count: 10})
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("after two unconfirmed appends of one item: %d items, %v; want it stored once", len(p.Items), err)
	}
}

// TestWaitReplicasMet: on Sentinel (two replicas) WAIT 2 is met.
func TestWaitReplicasMet(t *testing.T) {
	sb := redistest.SharedSentinel(t)
	cfg := sentinelConfig(sb, newPrefix())
	cfg.WaitReplicas = 2
	s := openConfig(t, cfg, faultOptions)
	defer s.Close()
	if got, err := s.Append(ctxT(t), topic, testItems("m", 3)); err != nil || len(got) != 3 {
		t.Fatalf("Append with WAIT 2 on two replicas = %d items, %v", len(got), err)
	}
	// A retry of stored items is acknowledged too (nothing stored again).
	if got, err := s.Append(ctxT(t), topic, testItems("m", 3)); err != nil || len(got) != 0 {
		t.Fatalf("retried Append = %d items, %v; want none stored and no error", len(got), err)
	}
}

// TestClusterOneLinkPerShard: a listener holds one sharded pub/sub
// connection per master serving its topics, subscribed to exactly the
// topics of that master, and an append is published on its topic's
// master alone.
func TestClusterOneLinkPerShard(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	s := openConfig(t, redisstore.Config{Cluster: c.Addrs()}, store.Options{})
	defer s.Close()
	var topics []string
	perMaster := make(map[string]int)
	for i := range 30 {
		tp := fmt.Sprintf("https://example.com/shards/%d.xml", i)
		topics = append(topics, tp)
		perMaster[c.MasterOf(redisstore.ItemsKey(s, tp))]++
	}
	mustListen(t, s, topics...)
	if len(perMaster) != 3 {
		t.Fatalf("30 topics on %d masters; want all three used", len(perMaster))
	}
	for _, m := range c.Masters() {
		v, err := c.Do(m, "CLIENT", "LIST", "TYPE", "pubsub")
		if err != nil {
			t.Fatal(err)
		}
		var subs []string
		for _, line := range strings.Split(fmt.Sprint(v), "\n") {
			for _, f := range strings.Fields(line) {
				if n, ok := strings.CutPrefix(f, "ssub="); ok && n != "0" {
					subs = append(subs, n)
				}
			}
		}
		if len(subs) != 1 || subs[0] != fmt.Sprint(perMaster[m]) {
			t.Errorf("master %s: sharded subscribers with %v channels; want one connection with its %d topics", m, subs, perMaster[m])
		}
	}
	spublish := func(m string) int64 {
		v, err := c.Do(m, "INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(fmt.Sprint(v), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_spublish:calls="); ok {
				n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
				return n
			}
		}
		return 0
	}
	before := make(map[string]int64)
	for _, m := range c.Masters() {
		before[m] = spublish(m)
	}
	if _, err := s.Append(ctxT(t), topics[0], testItems("x", 1)); err != nil {
		t.Fatal(err)
	}
	owner := c.MasterOf(redisstore.ItemsKey(s, topics[0]))
	for _, m := range c.Masters() {
		want := int64(0)
		if m == owner {
			want = 1
		}
		if got := spublish(m) - before[m]; got != want {
			t.Errorf("master %s published %d announcements of an append to a topic of %s; want %d", m, got, owner, want)
		}
	}
}
