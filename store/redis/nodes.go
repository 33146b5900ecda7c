package redisstore

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// The node registry (store.NodeRegistry) is one hash, a one-slot key:
// node id -> "<expiry Unix ms>|<info>". Listing removes expired records.
func (s *Store) nodesKey() string { return s.key("{nodes}") }

var _ store.NodeRegistry = (*Store)(nil)

// ARGV: now ms. Returns the live records as a flat list (id, value) and
// deletes the expired ones.
var nodesListScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local exp = tonumber(string.match(all[i + 1], '^(%d+)|'))
  if exp and exp > now then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
`)

// PutNode implements store.NodeRegistry.
func (s *Store) PutNode(ctx context.Context, n store.NodeRecord) error {
	if n.ID == "" {
		return fmt.Errorf("redis: a node record needs an id")
	}
	v := strconv.FormatInt(msOf(n.Expires), 10) + "|" + string(n.Info)
	return s.wrap("put node", s.rdb.HSet(ctx, s.nodesKey(), n.ID, v).Err())
}

// Nodes implements store.NodeRegistry.
func (s *Store) Nodes(ctx context.Context, now time.Time) ([]store.NodeRecord, error) {
	res, err := nodesListScript.Run(ctx, s.rdb, []string{s.nodesKey()}, msOf(now)).StringSlice()
	if err != nil {
		return nil, s.wrap("list nodes", err)
	}
	out := make([]store.NodeRecord, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		exp, info, _ := strings.Cut(res[i+1], "|")
		ms, _ := strconv.ParseInt(exp, 10, 64)
		out = append(out, store.NodeRecord{ID: res[i], Info: []byte(info), Expires: time.UnixMilli(ms)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RemoveNode implements store.NodeRegistry.
func (s *Store) RemoveNode(ctx context.Context, id string) error {
	return s.wrap("remove node", s.rdb.HDel(ctx, s.nodesKey(), id).Err())
}
