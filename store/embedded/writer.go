package embedded

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds how many write requests share one transaction (read by
// Open; 1 turns group commit off, which the benchmarks compare).
var maxGroup = 256

// op is one write request to the writer goroutine.
type op struct {
	ctx context.Context
	// apply makes the change in tx. It may run more than once (when the
	// group it belongs to is rolled back and replayed) and must record its
	// result afresh each time. An error aborts the transaction; results that
	// change nothing (not found, exists) are recorded, not returned.
	apply func(tx *bolt.Tx) error
	// committed runs after the change is durable, in commit order; may be nil.
	committed func()
	done      chan error
}

// write hands fn to the writer and waits for it to be committed. Once the
// writer has taken the request, write reports its true outcome even if ctx
// ends meanwhile.
func (s *Store) write(ctx context.Context, apply func(tx *bolt.Tx) error, committed func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{ctx: ctx, apply: apply, committed: committed, done: make(chan error, 1)}
	select {
	case s.ops <- o:
	case <-s.closing:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-o.done
}

// writer commits queued requests in groups until the store closes.
func (s *Store) writer() {
	defer close(s.writerEnd)
	for {
		var group []*op
		select {
		case o := <-s.ops:
			group = append(group, o)
		case <-s.closing:
			return
		}
	gather:
		for len(group) < s.maxGroup {
			select {
			case o := <-s.ops:
				group = append(group, o)
			default:
				break gather
			}
		}
		s.commit(group)
	}
}

// commit applies a group in one transaction. When the transaction fails,
// the request that failed is answered with its error and the others are
// replayed without it.
func (s *Store) commit(group []*op) {
	pending := group[:0]
	for _, o := range group {
		if err := o.ctx.Err(); err != nil {
			o.done <- err
			continue
		}
		pending = append(pending, o)
	}
	group = pending
	for len(group) > 0 {
		failed := -1
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, o := range group {
				if err := safeApply(o, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if err == nil {
			for _, o := range group {
				if o.committed != nil {
					o.committed()
				}
				o.done <- nil
			}
			return
		}
		if failed < 0 {
			// The commit itself failed (disk full, I/O error): nothing of
			// the group was stored.
			for _, o := range group {
				o.done <- fmt.Errorf("embedded store: commit failed: %w", err)
			}
			return
		}
		group[failed].done <- err
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}

// safeApply runs o.apply, turning a panic into an error so that one bad
// request cannot take the writer down.
func safeApply(o *op, tx *bolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("embedded store: write panicked: %v", r)
		}
	}()
	return o.apply(tx)
}
