package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/internal/clusterslot"
	"github.com/feedgate/feedgate/store"
)

// durable runs a write script and, with Config.WaitReplicas, follows it on
// the same connection with WAIT, so that the write is acknowledged only
// once enough replicas have it: a master failing over then loses no
// acknowledged write (Redis promises no more than that: see the README).
// WAIT counts the replicas that have every write the connection made, so
// it must run on the script's own connection: one pipeline, on the master
// serving key's slot.
//
// When the replicas do not confirm in time, the script's answer is still
// returned, with an error wrapping store.ErrNotReplicated: the write was
// made on the master and is kept unless it fails now; a retry of the same
// append stores nothing twice and is acknowledged once they have caught
// up.
func (s *Store) durable(ctx context.Context, key string, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd, _ := s.durableOn(ctx, key, script, keys, args...)
	return cmd
}

// durableOn is durable that also returns the client of the node that ran
// the script (with WaitReplicas), for what must follow on that node.
func (s *Store) durableOn(ctx context.Context, key string, script *redis.Script, keys []string, args ...any) (*redis.Cmd, redis.Cmdable) {
	if s.waitReplicas <= 0 {
		return script.Run(ctx, s.rdb, keys, args...), s.rdb
	}
	if s.mode == modeCluster {
		return s.durableCluster(ctx, key, script, keys, args)
	}
	// One server or a Sentinel-managed master: a plain client whose
	// pipeline runs on one connection.
	c, ok := s.rdb.(*redis.Client)
	if !ok {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(fmt.Errorf("redis: client %T cannot wait for replicas", s.rdb))
		return cmd, s.rdb
	}
	return s.evalWait(ctx, c, false, script, keys, args), c
}

// evalWait runs script then WAIT in one pipeline of c (ASKING first when
// asking: the slot is being imported by c's node).
func (s *Store) evalWait(ctx context.Context, c *redis.Client, asking bool, script *redis.Script, keys []string, args []any) *redis.Cmd {
	for attempt := 0; ; attempt++ {
		pipe := c.Pipeline().(*redis.Pipeline)
		if asking {
			pipe.Do(ctx, "ASKING")
		}
		cmd := script.EvalSha(ctx, pipe, keys, args...)
		wait := pipe.Wait(ctx, s.waitReplicas, s.waitTimeout)
		_, _ = pipe.Exec(ctx)
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") && attempt == 0 {
			if err := script.Load(ctx, c).Err(); err != nil {
				cmd.SetErr(err)
				return cmd
			}
			continue
		}
		if cmd.Err() != nil {
			return cmd
		}
		n, err := wait.Result()
		switch {
		case err != nil:
			cmd.SetErr(fmt.Errorf("%w: waiting for %d replicas: %w", store.ErrNotReplicated, s.waitReplicas, err))
		case n < int64(s.waitReplicas):
			cmd.SetErr(fmt.Errorf("%w: %d of %d replicas confirmed the write within %v", store.ErrNotReplicated, n, s.waitReplicas, s.waitTimeout))
		}
		return cmd
	}
}

// durableAttempts bounds how often a durable write follows a redirection
// or waits out a failover on Cluster, and failoverBudget how long it
// waits for a new master in all (a failover takes about twice the
// cluster-node-timeout); then the write fails with store.ErrUnavailable.
const (
	durableAttempts = 8
	failoverBudget  = 5 * time.Second
)

// durableCluster runs evalWait on the master of key's slot, following
// MOVED and ASK redirections and riding out a failover.
func (s *Store) durableCluster(ctx context.Context, key string, script *redis.Script, keys []string, args []any) (*redis.Cmd, redis.Cmdable) {
	slot := clusterslot.Of(key)
	ctx, cancel := context.WithTimeout(ctx, failoverBudget)
	defer cancel()
	var (
		target string
		asking bool
		cmd    *redis.Cmd
		client redis.Cmdable = s.rdb
		pauses               = newBackOff(50*time.Millisecond, time.Second)
	)
	for attempt := 0; attempt < durableAttempts; attempt++ {
		addr := target
		if addr == "" {
			var err error
			if addr, err = s.topo.master(ctx, slot); err != nil {
				cmd = redis.NewCmd(ctx)
				cmd.SetErr(err)
				if !sleep(ctx, pauses.NextBackOff()) {
					break
				}
				_ = s.topo.refresh(ctx)
				continue
			}
		}
		c := s.topo.client(addr)
		client = c
		cmd = s.evalWait(ctx, c, asking, script, keys, args)
		target, asking = "", false
		err := cmd.Err()
		if err == nil {
			return cmd, client
		}
		if a, ok := redis.IsMovedError(err); ok {
			target = a
			go func() { _ = s.topo.refresh(context.WithoutCancel(ctx)) }()
			continue
		}
		if a, ok := redis.IsAskError(err); ok {
			target, asking = a, true
			continue
		}
		if !unavailable(err) || ctx.Err() != nil {
			return cmd, client
		}
		// The master is gone or the cluster is failing over: look again.
		if !sleep(ctx, pauses.NextBackOff()) {
			break
		}
		_ = s.topo.refresh(ctx)
	}
	return cmd, client
}

// newBackOff is the pause schedule of the store's retries: first, doubling
// up to max, with jitter.
func newBackOff(first, max time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.Multiplier = first, max, 2
	b.Reset()
	return b
}

// sleep waits d unless ctx ends first; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
