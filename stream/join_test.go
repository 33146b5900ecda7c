package stream_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// TestGapFreeJoin has many clients join a topic, with and without after=,
// while items are being appended; each must see a contiguous sequence of
// cursors, nothing repeated, up to the last item.
func TestGapFreeJoin(t *testing.T) {
	const (
		clients = 50
		total   = 400
	)
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})
		n.publish(topicA, 5)

		var last atomic.Uint64
		last.Store(5)
		pubDone := make(chan error, 1)
		go func() {
			for published := 5; published < total; {
				k := min(1+rand.IntN(3), total-published)
				cs, err := publish(st, topicA, k, &n.seq)
				if err != nil {
					pubDone <- err
					return
				}
				published += k
				last.Store(uint64(cs[len(cs)-1]))
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			}
			pubDone <- nil
		}()

		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := 0; i < clients; i++ {
			time.Sleep(time.Duration(rand.IntN(8)) * time.Millisecond)
			kv := []string{"count", fmt.Sprint(1 + rand.IntN(10))}
			after := feed.Cursor(0)
			hasAfter := i%2 == 1
			if hasAfter {
				after = feed.Cursor(rand.Uint64N(last.Load() + 1))
				kv = append(kv, "after", after.String())
			}
			c := n.openNDJSON([]string{topicA}, kv...)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- follow(c, hasAfter, after, total)
			}()
		}
		if err := <-pubDone; err != nil {
			t.Fatalf("publishing: %v", err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
}

// follow reads a stream opened with after=cursor (or for the newest items)
// until the item with cursor upTo, checking the sequence.
func follow(c *ndjsonClient, hasAfter bool, after feed.Cursor, upTo feed.Cursor) error {
	first, ok := c.tryNext(waitFor)
	if !ok {
		return fmt.Errorf("after=%d: no first line", after)
	}
	var seq sequence
	if hasAfter {
		seq.next = after + 1
	}
	seq.add(first.cursors())
	if seq.next == 0 {
		seq.next = first.Status.Cursor + 1
	}
	if !hasAfter && len(first.Items) > 0 && first.Items[0].Cursor != first.Status.Cursor {
		return fmt.Errorf("first answer's newest item %d is not the topic's newest %d", first.Items[0].Cursor, first.Status.Cursor)
	}
	for seq.next <= upTo && seq.err == nil {
		n, ok := c.tryNext(waitFor)
		if !ok {
			return fmt.Errorf("after=%d: stream stalled waiting for cursor %d", after, seq.next)
		}
		seq.add(n.cursors())
	}
	if seq.err != nil {
		return fmt.Errorf("after=%d: %v", after, seq.err)
	}
	// Nothing more, in particular no repeat.
	if n, ok := c.tryNext(50 * time.Millisecond); ok {
		return fmt.Errorf("after=%d: unexpected notification after the last item: %v", after, n.cursors())
	}
	return nil
}
