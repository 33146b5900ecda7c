package hub

import (
	"context"
	"sync"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

// A batch is the items of a topic after one cursor, read once and encoded
// once per format, shared by every subscription that stands at that
// cursor: in the steady state all subscribers of a topic are, so a new item
// is read and encoded once per node however many callbacks get it, and only
// the signature is computed per subscriber.
type batch struct {
	// readAt is when the read began: the batch holds every item appended
	// before it.
	readAt time.Time
	ready  chan struct{}
	page   store.Page
	err    error

	n      *feed.Notification
	once   [2]sync.Once
	bodies [2][]byte
}

const (
	formatAtom = iota
	formatJSON
)

func formatIndex(format string) int {
	if format == "json" {
		return formatJSON
	}
	return formatAtom
}

// Content types of deliveries: those of retrieve answers.
var contentTypes = [2]string{formatAtom: retrieve.ContentTypeAtom, formatJSON: retrieve.ContentTypeJSON}

// body returns the batch encoded in the format: the same JSON as a
// retrieve notification, or a complete Atom feed document of the items.
func (b *batch) body(format int, hubURL string) []byte {
	b.once[format].Do(func() {
		if format == formatJSON {
			b.bodies[format] = feed.AppendJSON(nil, b.n)
		} else {
			b.bodies[format] = feed.AppendAtom(nil, b.n, b.n.Status.Feed, hubURL)
		}
	})
	return b.bodies[format]
}

type batchKey struct {
	topic string
	after feed.Cursor
}

// pageCache shares batches between the workers of a node.
type pageCache struct {
	mu sync.Mutex
	m  map[batchKey]*batch
}

func (c *pageCache) init() { c.m = make(map[batchKey]*batch) }

// batchTTL is how long a batch stays shared.
const batchTTL = 5 * time.Second

// get returns the items of topic after the cursor, from a read that began
// after notBefore: a claim made at notBefore must see every item appended
// before it, so a read that began earlier, or at the same reading of a
// clock (a coarse one, or a test's that stands still), cannot serve it.
func (c *pageCache) get(ctx context.Context, st store.Store, topic string, after feed.Cursor, count int, notBefore time.Time) (*batch, error) {
	k := batchKey{topic, after}
	c.mu.Lock()
	b, ok := c.m[k]
	if !ok || !b.readAt.After(notBefore) {
		b = &batch{readAt: time.Now(), ready: make(chan struct{})}
		c.m[k] = b
		c.mu.Unlock()
		b.page, b.err = st.Read(ctx, topic, store.Query{From: store.After, Cursor: after, Count: count})
		if b.err == nil {
			b.n = retrieve.Notification(topic, b.page)
		}
		close(b.ready)
		if b.err != nil {
			c.mu.Lock()
			if c.m[k] == b {
				delete(c.m, k)
			}
			c.mu.Unlock()
		}
		return b, b.err
	}
	c.mu.Unlock()
	select {
	case <-b.ready:
		return b, b.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// expire forgets batches older than batchTTL.
func (c *pageCache) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, b := range c.m {
		if now.Sub(b.readAt) > batchTTL {
			delete(c.m, k)
		}
	}
}
