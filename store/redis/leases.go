package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

var _ store.Leases = (*Store)(nil)

// leaseScript takes or renews a lease: a key fg:{lease:<name>} holding the
// holder, expiring after the ttl (ARGV: holder, ttl ms). 1 when held.
var leaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// Lease implements store.Leases.
func (s *Store) Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, s.rdb, []string{s.key("{lease:" + name + "}")}, holder, max(ttl.Milliseconds(), 1)).Int()
	if err != nil {
		return false, s.wrap("lease", err)
	}
	return n == 1, nil
}
