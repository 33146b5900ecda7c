package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/store"
)

// The node registry (store.NodeRegistry) of a single-node store: one
// bucket, nodes/<id> = expiry (Unix ms, 8 bytes) + info. An expired record
// is not listed; the node's next start (same id) replaces it.
var bucketNodes = []byte("nodes")

var _ store.NodeRegistry = (*Store)(nil)

func checkNode(id string) error {
	if err := checkName("node id", id); err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	return nil
}

// PutNode implements store.NodeRegistry.
func (s *Store) PutNode(ctx context.Context, n store.NodeRecord) error {
	if err := checkNode(n.ID); err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(ms(n.Expires)))
	v = append(v, n.Info...)
	return s.write(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		return b.Put([]byte(n.ID), v)
	}, nil)
}

// Nodes implements store.NodeRegistry.
func (s *Store) Nodes(ctx context.Context, now time.Time) ([]store.NodeRecord, error) {
	var out []store.NodeRecord
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := bucket(tx, bucketNodes)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) < 8 {
				return nil
			}
			exp := int64(binary.BigEndian.Uint64(v))
			if exp <= ms(now) {
				return nil
			}
			out = append(out, store.NodeRecord{ID: string(k), Info: bytes.Clone(v[8:]), Expires: time.UnixMilli(exp)})
			return nil
		})
	})
	return out, err
}

// RemoveNode implements store.NodeRegistry.
func (s *Store) RemoveNode(ctx context.Context, id string) error {
	if checkNode(id) != nil {
		return nil
	}
	return s.write(ctx, func(tx *bolt.Tx) error {
		b := bucket(tx, bucketNodes)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(id))
	}, nil)
}
