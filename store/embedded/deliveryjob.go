package embedded

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/store"
)

func errNoDelivery(k store.DeliveryKey) error {
	return fmt.Errorf("embedded store: delivery of %s to %s: %w", k.Topic, k.Callback, store.ErrNotFound)
}

// RetryDelivery implements store.DeliveryStore.
func (s *Store) RetryDelivery(ctx context.Context, k store.DeliveryKey, at time.Time) error {
	if checkDeliveryKey(k) != nil {
		return errNoDelivery(k)
	}
	rk := deliveryKey(k)
	found := false
	err := s.write(ctx, func(tx *bolt.Tx) error {
		found = false
		if bucket(tx, bucketDeliveries) == nil {
			return nil
		}
		b, err := s.openDeliveries(tx)
		if err != nil || b.recs.Get(rk) == nil {
			return err
		}
		found = true
		_, err = b.schedule(rk, ms(at), store.Override)
		return err
	}, nil)
	if err == nil && !found {
		err = errNoDelivery(k)
	}
	return err
}

// DeliveryJob implements store.DeliveryStore.
func (s *Store) DeliveryJob(ctx context.Context, k store.DeliveryKey, now time.Time) (store.DeliveryJob, error) {
	var job store.DeliveryJob
	found := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		recs := bucket(tx, bucketDeliveries)
		if recs == nil || checkDeliveryKey(k) != nil {
			return nil
		}
		rk := deliveryKey(k)
		if recs.Get(rk) == nil {
			return nil
		}
		found = true
		j, ok := s.deliveryJobs().read(tx)
		if !ok {
			return nil
		}
		r, ok, err := j.get(rk)
		if err != nil || !ok {
			return err
		}
		job.Due = time.UnixMilli(r.Due)
		job.Leased = r.Token != "" && r.Until > ms(now)
		return nil
	})
	if err == nil && !found {
		err = errNoDelivery(k)
	}
	return job, err
}
