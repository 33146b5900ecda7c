// Package embedded is feedgate's single-node store: everything lives in one
// bbolt file in the data directory, so a gateway runs with nothing else to
// install.
//
// Layout of the bbolt file (big-endian uint64 cursors as item keys, so that
// bbolt's byte order is cursor order):
//
//	topics/<topic>/last           newest cursor ever assigned
//	topics/<topic>/state          TopicState as JSON
//	topics/<topic>/items/<cursor> item as JSON, with its content hash
//	topics/<topic>/seen/<sha256>  (id, hash) pairs ever stored -> cursor (dedup)
//	topics/<topic>/ids/<id>       entry id -> newest cursor (CursorOf)
//	users/<login>                 User as JSON
//	subs/<topic,callback,login>   Subscription as JSON
//	subsByLogin/<login,topic,callback> the same Subscription as JSON
//	tracked/<topic>               number of subscriptions of the topic
//
// Items are trimmed to the retention; the seen and ids indexes are not, so an
// entry that is still in a long feed after its item was trimmed is not stored
// again (they cost about 50 bytes per stored item).
//
// All writes go through one writer goroutine that commits whatever requests
// are waiting in one transaction (group commit: one fsync for many appends)
// and, after the commit, announces appended items to live listeners in
// commit order — which is cursor order — so a notification never precedes
// its data and two racing appends to one topic are announced in order. An
// Append has been fsynced when it returns. Appends whose entries are all
// known already are answered by a read, without a write.
//
// Live listeners get their batches through a queue of their own, so a
// listener that stops reading never blocks appends: past a backlog of
// 10 000 items its queue is dropped and it receives a Resync batch instead,
// after which it must re-read its topics by cursor (as after a Redis outage).
//
// Reads are served from the bbolt file, with decoded items and topic states
// cached in memory (about 64 MiB at most): items never change once stored,
// so the cache needs no invalidation.
//
// bbolt locks the file: a second process opening the same directory fails
// after a second with ErrLocked.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/feedgate/feedgate/store"
)

// FileName is the name of the database file inside the data directory.
const FileName = "feedgate.db"

// ErrLocked reports that another process holds the data directory.
var ErrLocked = errors.New("data dir is locked")

// errClosed is returned by every method once the store is closed.
var errClosed = fmt.Errorf("%w: the embedded store is closed", store.ErrUnavailable)

// lockTimeout is how long Open waits for another process to release the
// database file before failing with ErrLocked.
var lockTimeout = time.Second

// defaultBacklog is how many announced items a listener may have waiting
// before its backlog is dropped and replaced by a Resync batch.
const defaultBacklog = 10000

var _ store.Store = (*Store)(nil)

// Store is the embedded backend. It is safe for concurrent use.
type Store struct {
	db        *bolt.DB
	dir       string
	retention int

	ops       chan *op
	maxGroup  int
	closing   chan struct{}
	writerEnd chan struct{}
	closeOnce sync.Once

	live   live
	leases leases
	cache  itemCache
	states stateCache
	// changes hears of appends and topic updates.
	changes *store.ChangeHook
}

// Open opens (creating it if needed) the store in dir. It fails with an
// error wrapping ErrLocked, within about a second, when another process
// has the directory open.
func Open(dir string, opts store.Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("embedded store: the data dir is empty; set --data-dir")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded store: cannot create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: data dir %s is in use by another feedgate process; stop it or choose another --data-dir", ErrLocked, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded store: cannot open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketTopics, bucketUsers, bucketSubs, bucketSubsByLogin, bucketTracked} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("embedded store: cannot initialise %s: %w", path, err)
	}
	s := &Store{
		db:        db,
		dir:       dir,
		retention: opts.RetentionOrDefault(),
		changes:   opts.Changes,
		ops:       make(chan *op),
		maxGroup:  maxGroup,
		closing:   make(chan struct{}),
		writerEnd: make(chan struct{}),
	}
	s.live.init(defaultBacklog)
	s.cache.init(defaultCacheBytes)
	s.states.init(maxCachedStates)
	go s.writer()
	return s, nil
}

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

// Ping reports whether the store is open.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.closing:
		return errClosed
	default:
		return nil
	}
}

// Close waits for writes in progress, closes every listener and the database.
// Calling it again does nothing.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.writerEnd
		s.live.closeAll()
		err = s.db.Close()
	})
	return err
}

// view runs a read transaction unless the store is closed.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return errClosed
	}
	return err
}
