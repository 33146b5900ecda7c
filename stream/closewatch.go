package stream

import (
	"net"

	"github.com/feedgate/feedgate/live"
)

// watchByReading drops c when reading conn fails (the client closed it, or
// the stream ended and closed it): a goroutine blocked in Read for the
// connection's life. The function it returns does nothing: the goroutine
// ends with the connection.
func watchByReading(conn net.Conn, c *client) func() {
	go func() {
		var buf [1]byte
		for {
			if _, err := conn.Read(buf[:]); err != nil {
				c.Drop(live.ReasonGone)
				return
			}
		}
	}()
	return func() {}
}
