package retrieve

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/store"
)

// Defaults of CacheOptions.
const (
	DefaultCacheTopics = 10000
	DefaultCacheBytes  = 128 << 20
	DefaultCacheTTL    = time.Second
	DefaultCacheIdle   = time.Minute
)

// CacheOptions tune a Cache.
type CacheOptions struct {
	// Topics bounds the topics held (DefaultCacheTopics when 0); the least
	// recently read is dropped first.
	Topics int
	// Bytes bounds, approximately, the memory of the items held
	// (DefaultCacheBytes when 0); the least recently read go first.
	Bytes int
	// Count is how many newest items are held per topic: the largest count
	// a retrieve may ask for (the default of Limits.MaxCount when 0).
	Count int
	// TTL bounds the age of what is served (DefaultCacheTTL when 0): topic
	// status changes made by other nodes are not announced live.
	TTL time.Duration
	// Idle drops topics not read for that long (DefaultCacheIdle when 0).
	Idle time.Duration
	// Changes is the hook the store was opened with; the node's own writes
	// reach the cache through it before the writer is answered.
	Changes *store.ChangeHook
	// Registerer receives the cache's metrics (none when nil).
	Registerer prometheus.Registerer
}

// Cache holds, per hot topic, the page a store read of the newest Count
// items returns, so that retrieves of the newest items of a topic (the
// common request) are answered from memory.
//
// A topic is held from its second read within Idle on, so that topics
// read once cost no subscription. It stays exact as a consumer of the node
// hub (package live): a notification of the topic, or the news that its
// notifications were lost, drops what is held, and the next read reloads
// it. A miss subscribes to the topic before it reads, and installs what it
// read only when nothing was announced in between (a generation number per
// topic). Appends by other nodes are therefore seen after the pub/sub
// delay; this node's own appends and topic updates drop the entry through
// the store's ChangeHook before the writer is answered. Topic status,
// which changes without announcements, is at most TTL old. While the
// hub's live link is down, or topics are being re-read after it came
// back, every read goes to the store.
type Cache struct {
	st     store.Items
	hub    *live.Hub // nil: the cache is off and reads go to the store
	count  int
	max    int
	budget int
	ttl    time.Duration
	idle   time.Duration
	m      cacheMetrics

	mu      sync.Mutex
	entries map[string]*entry
	lru     entry // sentinel of the list of entries, most recently read first
	bytes   int   // sum of the sizes of the pages held
	subs    map[string]*sub
	evicted []string // topics to unsubscribe from, if still unused
	down    bool     // the hub was seen unhealthy
	closed  bool

	wake chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// entry is one topic's cached page.
type entry struct {
	topic    string
	gen      uint64 // bumped by every change of the topic
	page     store.Page
	has      bool // page is valid
	size     int  // approximate memory of page
	loadedAt time.Time
	lastUsed time.Time
	loading  *load // the read in progress, shared by concurrent misses
	// answers are encoded answers of page, by form and count: a hot
	// topic's answer is encoded once, not once per request.
	answers    map[answerKey]encoded
	prev, next *entry
}

// encoded is an encoded answer and its Content-Length header value, both
// shared by every request that writes it.
type encoded struct {
	body   []byte
	length []string
}

func newEncoded(body []byte) encoded {
	return encoded{body: body, length: []string{strconv.Itoa(len(body))}}
}

// answerKey names one encoded answer of a page.
type answerKey struct {
	format Format
	count  int
}

// load is one store read shared by the misses that wait for it.
type load struct {
	gen  uint64 // the entry's generation when the load began
	done chan struct{}
	page store.Page
	err  error
}

// sub is the cache's subscription to one topic on the hub.
type sub struct {
	ready bool          // Subscribe returned
	done  chan struct{} // closed when the pending Subscribe or Unsubscribe ends
}

// NewCache returns a cache of st's newest items kept exact through hub.
// Close releases it.
func NewCache(hub *live.Hub, st store.Items, opts CacheOptions) *Cache {
	c := &Cache{
		st:      st,
		count:   opts.Count,
		max:     opts.Topics,
		budget:  opts.Bytes,
		ttl:     opts.TTL,
		idle:    opts.Idle,
		m:       newCacheMetrics(opts.Registerer),
		entries: make(map[string]*entry),
		subs:    make(map[string]*sub),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	if c.count <= 0 {
		c.count = Limits{}.withDefaults().MaxCount
	}
	if c.max <= 0 {
		c.max = DefaultCacheTopics
	}
	if c.budget <= 0 {
		c.budget = DefaultCacheBytes
	}
	if c.ttl <= 0 {
		c.ttl = DefaultCacheTTL
	}
	if c.idle <= 0 {
		c.idle = DefaultCacheIdle
	}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	if hub == nil {
		return c
	}
	c.hub = hub
	if opts.Changes != nil {
		opts.Changes.OnChange(c.changed)
	}
	c.wg.Add(1)
	go c.janitor()
	return c
}

// Close stops the cache and its subscriptions; later reads go to the
// store.
func (c *Cache) Close() error {
	if c == nil || c.hub == nil {
		return nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.dropAllLocked()
	topics := make([]string, 0, len(c.subs))
	for t := range c.subs {
		topics = append(topics, t)
	}
	c.mu.Unlock()
	close(c.stop)
	c.wg.Wait()
	c.hub.Unsubscribe(c, topics...)
	return nil
}

// Read answers q like the store would, from memory when q reads the newest
// items (at most Count of them) of a topic whose page is held.
func (c *Cache) Read(ctx context.Context, topic string, q store.Query) (store.Page, error) {
	return c.read(ctx, topic, q, false)
}

// hold loads topic's page now if it is not held (a live client joins or
// resumes: many others of the topic are likely to follow, as after a
// restart); concurrent calls share one read. It reports whether the page
// is held.
func (c *Cache) hold(ctx context.Context, topic string) bool {
	_, err := c.read(ctx, topic, store.Query{From: store.Newest, Count: c.count}, true)
	return err == nil
}

func (c *Cache) read(ctx context.Context, topic string, q store.Query, now bool) (store.Page, error) {
	if c.hub == nil || q.From != store.Newest || q.Count <= 0 || q.Count > c.count {
		return c.st.Read(ctx, topic, q)
	}
	healthy := c.hub.Healthy()
	at := time.Now()
	c.mu.Lock()
	c.noteHealthLocked(healthy)
	if c.down || c.closed {
		c.mu.Unlock()
		c.m.bypasses.Inc()
		return c.st.Read(ctx, topic, q)
	}
	e := c.entries[topic]
	switch {
	case e != nil:
		e.lastUsed = at
		c.touchLocked(e)
		if e.has && at.Sub(e.loadedAt) < c.ttl {
			page := e.page
			c.mu.Unlock()
			c.m.hits.Inc()
			return prefix(page, q.Count), nil
		}
	case !now:
		// A topic is held from its second read on: one read of a topic
		// costs no subscription.
		e = &entry{topic: topic, lastUsed: at}
		c.entries[topic] = e
		c.pushLocked(e)
		c.evictLocked()
		c.mu.Unlock()
		c.m.misses.Inc()
		return c.st.Read(ctx, topic, q)
	default:
		e = &entry{topic: topic, lastUsed: at}
		c.entries[topic] = e
		c.pushLocked(e)
		c.evictLocked()
	}
	c.m.misses.Inc()
	// A load that began before the latest change may miss it: only a load
	// of the current generation is shared.
	ld := e.loading
	if ld != nil && ld.gen == e.gen {
		c.mu.Unlock()
		select {
		case <-ld.done:
		case <-ctx.Done():
			return store.Page{}, ctx.Err()
		}
		if ld.err != nil {
			// The reader's own request may have ended; read for ourselves.
			return c.st.Read(ctx, topic, q)
		}
		return prefix(ld.page, q.Count), nil
	}
	ld = &load{gen: e.gen, done: make(chan struct{})}
	e.loading = ld
	c.mu.Unlock()

	ld.page, ld.err = c.load(ctx, e, ld.gen)
	c.mu.Lock()
	if e.loading == ld {
		e.loading = nil
	}
	c.mu.Unlock()
	close(ld.done)
	if ld.err != nil {
		return store.Page{}, ld.err
	}
	return prefix(ld.page, q.Count), nil
}

// load reads e's page from the store, after making sure appends to the
// topic are announced, and installs it unless a change came since gen.
func (c *Cache) load(ctx context.Context, e *entry, gen uint64) (store.Page, error) {
	q := store.Query{From: store.Newest, Count: c.count}
	if err := c.subscribe(ctx, e.topic); err != nil {
		// Not announced: serve this read, keep nothing.
		return c.st.Read(ctx, e.topic, q)
	}
	page, err := c.st.Read(ctx, e.topic, q)
	if err != nil {
		return page, err
	}
	now := time.Now()
	size := pageSize(page)
	c.mu.Lock()
	if c.entries[e.topic] == e && e.gen == gen && !c.down && !c.closed && size <= c.budget {
		e.page, e.has, e.loadedAt, e.size = page, true, now, size
		c.bytes += size
		for c.bytes > c.budget {
			c.removeLocked(c.lru.prev)
		}
	}
	c.mu.Unlock()
	return page, nil
}

// subscribe adds topic to the listener unless it is there; it waits for a
// Remove of the topic in progress to end first.
func (c *Cache) subscribe(ctx context.Context, topic string) error {
	for {
		c.mu.Lock()
		s := c.subs[topic]
		if s != nil && s.ready {
			c.mu.Unlock()
			return nil
		}
		if s != nil {
			done := s.done
			c.mu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		s = &sub{done: make(chan struct{})}
		c.subs[topic] = s
		c.mu.Unlock()

		err := c.hub.Subscribe(ctx, c, topic)
		c.mu.Lock()
		if err != nil {
			delete(c.subs, topic)
		} else {
			s.ready = true
		}
		c.mu.Unlock()
		close(s.done)
		return err
	}
}

// unsubscribe unsubscribes from the evicted topics that have no entry
// again.
func (c *Cache) unsubscribe() {
	var later []string // still being added: tried again at the next tick
	defer func() {
		c.mu.Lock()
		c.evicted = append(c.evicted, later...)
		c.mu.Unlock()
	}()
	for {
		c.mu.Lock()
		var topic string
		var s *sub
		for len(c.evicted) > 0 && s == nil {
			topic = c.evicted[len(c.evicted)-1]
			c.evicted = c.evicted[:len(c.evicted)-1]
			if _, back := c.entries[topic]; back {
				continue
			}
			switch cand := c.subs[topic]; {
			case cand == nil:
			case cand.ready:
				s = cand
			default:
				later = append(later, topic)
			}
		}
		if s == nil {
			c.evicted = nil
			c.mu.Unlock()
			return
		}
		// Misses of the topic wait for the Remove, then Add again.
		removing := &sub{done: make(chan struct{})}
		c.subs[topic] = removing
		c.mu.Unlock()
		c.hub.Unsubscribe(c, topic)
		c.mu.Lock()
		delete(c.subs, topic)
		c.mu.Unlock()
		close(removing.done)
	}
}

// Notify implements live.Consumer: what is held of the topic is stale.
func (c *Cache) Notify(n *live.Notification) { c.changed(n.Topic) }

// Lost implements live.Consumer.
func (c *Cache) Lost(topic string) { c.changed(topic) }

// changed is the store's ChangeHook: this node wrote to topic.
func (c *Cache) changed(topic string) {
	c.mu.Lock()
	if e := c.entries[topic]; e != nil {
		c.dropLocked(e)
	}
	c.mu.Unlock()
}

// janitor drops idle topics, unsubscribes evicted ones, and watches the
// link when no read does.
func (c *Cache) janitor() {
	defer c.wg.Done()
	tick := time.NewTicker(min(c.ttl/4, c.idle/4))
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-tick.C:
			c.sweep(time.Now())
		}
		c.unsubscribe()
	}
}

// noteHealthLocked follows the hub's health: while it is down nothing is
// held (announcements may be missing); once it is back, the hub has
// re-read every topic, and its notifications dropped what they changed.
func (c *Cache) noteHealthLocked(healthy bool) {
	switch {
	case !healthy && !c.down:
		c.down = true
		c.dropAllLocked()
	case healthy && c.down:
		c.down = false
		c.dropAllLocked()
	}
}

// sweep drops topics idle for too long, and notices a broken link.
func (c *Cache) sweep(now time.Time) {
	healthy := c.hub.Healthy()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noteHealthLocked(healthy)
	for e := c.lru.prev; e != &c.lru && now.Sub(e.lastUsed) > c.idle; e = c.lru.prev {
		c.removeLocked(e)
	}
	c.m.topics.Set(float64(len(c.entries)))
}

// evictLocked drops the least recently read topics beyond the bound.
func (c *Cache) evictLocked() {
	for len(c.entries) > c.max {
		c.removeLocked(c.lru.prev)
	}
}

// removeLocked forgets e and has the janitor unsubscribe from its topic.
func (c *Cache) removeLocked(e *entry) {
	delete(c.entries, e.topic)
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	c.dropLocked(e)
	c.evicted = append(c.evicted, e.topic)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Cache) dropAllLocked() {
	for _, e := range c.entries {
		c.dropLocked(e)
	}
}

// dropLocked invalidates e's page and any read of it in progress.
func (c *Cache) dropLocked(e *entry) {
	e.gen++
	c.bytes -= e.size
	e.page, e.has, e.size, e.answers = store.Page{}, false, 0, nil
}

// maxAnswers bounds the encoded answers kept per topic (forms times
// counts asked for).
const maxAnswers = 8

// answer returns the encoded answer of the newest count items of topic in
// form f (JSON with its newline, or Atom), shared by every request that
// asks the same while the page is held. ok is false when the page is not
// held: the caller reads through Read.
func (c *Cache) answer(topic string, count int, f Format, encode func(store.Page) []byte) (encoded, bool) {
	if c.hub == nil || count <= 0 || count > c.count {
		return encoded{}, false
	}
	healthy := c.hub.Healthy()
	now := time.Now()
	key := answerKey{format: f, count: count}
	c.mu.Lock()
	c.noteHealthLocked(healthy)
	e := c.entries[topic]
	if c.down || c.closed || e == nil || !e.has || now.Sub(e.loadedAt) >= c.ttl {
		c.mu.Unlock()
		return encoded{}, false
	}
	e.lastUsed = now
	c.touchLocked(e)
	if b, ok := e.answers[key]; ok {
		c.mu.Unlock()
		c.m.hits.Inc()
		return b, true
	}
	page, gen := prefix(e.page, count), e.gen
	c.mu.Unlock()
	c.m.hits.Inc()
	b := newEncoded(encode(page))
	c.mu.Lock()
	if c.entries[topic] == e && e.gen == gen && e.has && len(e.answers) < maxAnswers {
		if e.answers == nil {
			e.answers = make(map[answerKey]encoded, 2)
		}
		e.answers[key] = b
		e.size += len(b.body)
		c.bytes += len(b.body)
	}
	c.mu.Unlock()
	return b, true
}

// pageSize approximates the memory a page holds.
func pageSize(p store.Page) int {
	n := 512 + len(p.Topic.Meta.Title) + len(p.Topic.Meta.Subtitle) + len(p.Topic.Status.HTTP)
	for i := range p.Items {
		n += p.Items[i].MemSize()
	}
	return n
}

func (c *Cache) pushLocked(e *entry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

func (c *Cache) touchLocked(e *entry) {
	if c.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	c.pushLocked(e)
}

// after answers a read of the count items directly following cursor from
// a held page, when they are all in it (the cursor is not older than the
// page's oldest item but one): what a client resuming from a recent cursor
// asks. ok is false otherwise; the caller reads the store.
func (c *Cache) after(topic string, cursor feed.Cursor, count int) (store.Page, bool) {
	if c.hub == nil || count <= 0 {
		return store.Page{}, false
	}
	healthy := c.hub.Healthy()
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noteHealthLocked(healthy)
	e := c.entries[topic]
	if c.down || c.closed || e == nil || !e.has || now.Sub(e.loadedAt) >= c.ttl {
		return store.Page{}, false
	}
	p := e.page
	if cursor > p.Last {
		return store.Page{}, false
	}
	// Items are newest first and contiguous: the page must reach back to
	// the item after cursor (else items were trimmed, or are not held).
	if n := len(p.Items); n == 0 || p.Items[n-1].Cursor > cursor+1 {
		return store.Page{}, false
	}
	e.lastUsed = now
	c.touchLocked(e)
	c.m.hits.Inc()
	// The count items after cursor: from cursor+1 up to cursor+count.
	hi := 0
	for hi < len(p.Items) && p.Items[hi].Cursor > cursor+feed.Cursor(count) {
		hi++
	}
	lo := hi
	for lo < len(p.Items) && p.Items[lo].Cursor > cursor {
		lo++
	}
	p.Items = p.Items[hi:lo:lo]
	if len(p.Items) == 0 {
		p.Items = nil // as the store answers: nothing follows the cursor
	}
	return p, true
}

// prefix is the page of the newest n items of a Newest page. The items are
// shared by every reader and must not be changed; the capacity is cut so
// that an append cannot write into them.
func prefix(p store.Page, n int) store.Page {
	if len(p.Items) > n {
		p.Items = p.Items[:n:n]
	} else {
		p.Items = p.Items[:len(p.Items):len(p.Items)]
	}
	return p
}

// Len returns how many topics are held.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

type cacheMetrics struct {
	hits, misses, bypasses prometheus.Counter
	topics                 prometheus.Gauge
}

func newCacheMetrics(reg prometheus.Registerer) cacheMetrics {
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedgate_retrieve_cache_reads_total",
		Help: "Retrieves of the newest items by how the node's cache answered: hit (memory), miss (store, then held), bypass (store: live link down).",
	}, []string{"result"})
	topics := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "feedgate_retrieve_cache_topics",
		Help: "Topics whose newest items the node's retrieve cache holds.",
	})
	if reg != nil {
		reads = register(reg, reads)
		topics = register(reg, topics)
	}
	return cacheMetrics{
		hits:     reads.WithLabelValues("hit"),
		misses:   reads.WithLabelValues("miss"),
		bypasses: reads.WithLabelValues("bypass"),
		topics:   topics,
	}
}

// register registers col, or returns the collector registered before under
// the same name (two caches on one registry share their metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, col C) C {
	if err := reg.Register(col); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		panic(err)
	}
	return col
}
