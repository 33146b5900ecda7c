//go:build !linux

package stream

import "net"

// closeWatcher watches each idle stream connection with a goroutine of its
// own where epoll is not available.
type closeWatcher struct{}

func (w *closeWatcher) watch(conn net.Conn, c *client) func() {
	return watchByReading(conn, c)
}

func (w *closeWatcher) stop() {}
