package stream_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// TestGapFreeJoin has many clients join a topic, with and without after=,
// each while items are being appended (a few appends start as each client
// joins); each must see a contiguous sequence of cursors, nothing
// repeated, up to the last item.
func TestGapFreeJoin(t *testing.T) {
	const clients = 50
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})
		n.publish(topicA, 5)

		var last atomic.Uint64
		last.Store(5)
		joins := make(chan struct{}, clients)
		pubDone := make(chan error, 1)
		go func() {
			for range joins {
				for range 1 + rand.IntN(3) {
					cs, err := publish(st, topicA, 1+rand.IntN(2), &n.seq)
					if err != nil {
						pubDone <- err
						return
					}
					last.Store(uint64(cs[len(cs)-1]))
				}
			}
			pubDone <- nil
		}()

		type joiner struct {
			c        *ndjsonClient
			hasAfter bool
			after    feed.Cursor
		}
		js := make([]joiner, clients)
		for i := range js {
			kv := []string{"count", fmt.Sprint(1 + rand.IntN(10))}
			j := joiner{hasAfter: i%2 == 1}
			if j.hasAfter {
				j.after = feed.Cursor(rand.Uint64N(last.Load() + 1))
				kv = append(kv, "after", j.after.String())
			}
			joins <- struct{}{}
			j.c = n.openNDJSON([]string{topicA}, kv...)
			js[i] = j
		}
		close(joins)
		if err := <-pubDone; err != nil {
			t.Fatalf("publishing: %v", err)
		}
		// The last item, published once every client joined.
		upTo := n.publish(topicA, 1)[0]

		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for _, j := range js {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- follow(j.c, j.hasAfter, j.after, upTo)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			return
		}
		// Nothing more, in particular no repeat: the next notification of
		// every client is the next item alone.
		next := n.publish(topicA, 1)[0]
		for i, j := range js {
			j.c.expectNext(fmt.Sprintf("client %d (after=%d) after the last item", i, j.after), next)
		}
	})
}

// follow reads a stream opened with after=cursor (or for the newest items)
// until the item with cursor upTo, checking the sequence.
func follow(c *ndjsonClient, hasAfter bool, after feed.Cursor, upTo feed.Cursor) error {
	first, ok := c.tryNext(waitFor)
	if !ok {
		return fmt.Errorf("after=%d: no first line within %v", after, waitFor)
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
			return fmt.Errorf("after=%d: the stream stalled for %v waiting for cursor %d", after, waitFor, seq.next)
		}
		seq.add(n.cursors())
	}
	if seq.err != nil {
		return fmt.Errorf("after=%d: %v", after, seq.err)
	}
	if seq.next != upTo+1 {
		return fmt.Errorf("after=%d: got up to cursor %d, past the last item %d", after, seq.next-1, upTo)
	}
	return nil
}
