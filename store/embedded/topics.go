package embedded

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/store"
)

func decodeState(tb *bolt.Bucket, ts *store.TopicState) error {
	v := tb.Get(keyState)
	if v == nil {
		return nil
	}
	topic := ts.Topic
	if err := json.Unmarshal(v, ts); err != nil {
		return fmt.Errorf("embedded store: state of topic %q is corrupt: %w", topic, err)
	}
	ts.Topic = topic
	return nil
}

// Topic returns the topic's state; an unknown topic has a zero state.
func (s *Store) Topic(ctx context.Context, topic string) (store.TopicState, error) {
	ts := store.TopicState{Topic: topic}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if tb := topicBucket(tx, topic); tb != nil {
			return s.states.decode(topic, tb.Get(keyState), &ts)
		}
		return nil
	})
	if err != nil {
		return store.TopicState{Topic: topic}, err
	}
	return ts, nil
}

// UpdateTopic applies fn to the topic's state and stores the result. fn runs
// inside the store's write transaction: it must be quick and must not call
// the store's write methods.
func (s *Store) UpdateTopic(ctx context.Context, topic string, fn func(*store.TopicState) error) error {
	if err := checkName("topic", topic); err != nil {
		return fmt.Errorf("embedded store: cannot update topic: %w", err)
	}
	var fnErr error
	err := s.write(ctx, func(tx *bolt.Tx) error {
		fnErr = nil
		ts := store.TopicState{Topic: topic}
		tb := topicBucket(tx, topic)
		if tb != nil {
			if err := decodeState(tb, &ts); err != nil {
				return err
			}
		}
		if fnErr = fn(&ts); fnErr != nil {
			return nil // nothing written
		}
		ts.Topic = topic
		v, err := json.Marshal(ts)
		if err != nil {
			return fmt.Errorf("embedded store: cannot encode state of topic %q: %w", topic, err)
		}
		if tb == nil {
			if tb, err = tx.Bucket(bucketTopics).CreateBucket([]byte(topic)); err != nil {
				return err
			}
		}
		return tb.Put(keyState, v)
	}, nil)
	if err != nil {
		return err
	}
	if fnErr == nil {
		s.changes.Changed(topic)
	}
	return fnErr
}
