package clusterslot

import "testing"

// The slots Redis itself gives (CLUSTER KEYSLOT) for these keys.
func TestOf(t *testing.T) {
	for key, want := range map[string]int{
		"":               0,
		"foo":            12182,
		"123456789":      12739,
		"{user1000}.a":   Of("user1000"),
		"{}.a":           Of("{}.a"),
		"a{}b{x}":        Of("a{}b{x}"),
		"{tag}x":         8338,
		"fg:{abc}:items": Of("abc"),
		"fg:{abc}:live":  Of("abc"),
		"no{close":       Of("no{close"),
		"x{a}y{b}":       Of("a"),
	} {
		if got := Of(key); got != want {
			t.Errorf("Of(%q) = %d, want %d", key, got, want)
		}
	}
}
