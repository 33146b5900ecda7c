package embedded

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/feed"
)

var (
	bucketTopics      = []byte("topics")
	bucketUsers       = []byte("users")
	bucketSubs        = []byte("subs")
	bucketSubsByLogin = []byte("subsByLogin")
	bucketTracked     = []byte("tracked")

	// Inside a topic's bucket.
	keyLast     = []byte("last")
	keyState    = []byte("state")
	bucketItems = []byte("items")
	bucketSeen  = []byte("seen")
	bucketIDs   = []byte("ids")
)

// maxNameLen bounds topics, logins and callbacks used in keys; bbolt's own
// limit is 32 KiB per key and a subscription key holds three names.
const maxNameLen = 4 << 10

// maxIDKeyLen is the longest entry id kept verbatim as a key; longer ids
// are keyed by their SHA-256.
const maxIDKeyLen = 1 << 10

func checkName(what, v string) error {
	if v == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(v) > maxNameLen {
		return fmt.Errorf("%s is %d bytes long; the limit is %d", what, len(v), maxNameLen)
	}
	return nil
}

func cursorKey(c feed.Cursor) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(c))
	return b[:]
}

func keyCursor(k []byte) feed.Cursor {
	if len(k) != 8 {
		return 0
	}
	return feed.Cursor(binary.BigEndian.Uint64(k))
}

// idKey is the key of an entry id in the ids bucket (never empty).
func idKey(id string) []byte {
	if len(id) > maxIDKeyLen {
		sum := sha256.Sum256([]byte(id))
		return append([]byte{'h'}, sum[:]...)
	}
	return append([]byte{'i'}, id...)
}

// seenKey identifies an (id, hash) pair in the seen bucket.
func seenKey(id, hash string) []byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(id)))])
	h.Write([]byte(id))
	h.Write([]byte(hash))
	return h.Sum(nil)
}

// tupleKey encodes strings so that byte order of keys is the order of the
// tuples and each prefix of the tuple is a prefix of the key: NUL becomes
// 0x00 0xFF and each element ends with 0x00 0x01.
func tupleKey(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 2
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			if p[i] == 0 {
				out = append(out, 0, 0xFF)
			} else {
				out = append(out, p[i])
			}
		}
		out = append(out, 0, 1)
	}
	return out
}

// topicBucket returns the topic's bucket, or nil when the topic has none.
func topicBucket(tx *bolt.Tx, topic string) *bolt.Bucket {
	if topic == "" || len(topic) > maxNameLen {
		return nil
	}
	return tx.Bucket(bucketTopics).Bucket([]byte(topic))
}

func getCursor(b *bolt.Bucket, k []byte) feed.Cursor {
	if b == nil {
		return 0
	}
	return keyCursor(b.Get(k))
}
