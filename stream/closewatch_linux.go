package stream

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"github.com/feedgate/feedgate/live"
)

// closeWatcher notices, for every idle stream connection at once, that the
// client closed it: one epoll instance and one goroutine for the node's
// connections, instead of a goroutine blocked in Read per connection. An
// event (readable, hang-up, error) is checked with a non-blocking read of
// the connection: end of file or an error drops the client; bytes a client
// sends on a stream are read and ignored.
type closeWatcher struct {
	once sync.Once
	epfd int
	wake [2]int // a pipe that ends the loop
	err  error
	done chan struct{}

	mu    sync.Mutex
	conns map[uint64]watched
	next  uint64
}

type watched struct {
	rc syscall.RawConn
	c  *client
}

// epollEvents: readable, peer hang-up, edge-triggered (EPOLLET, 1<<31).
const epollEvents = uint32(syscall.EPOLLIN|syscall.EPOLLRDHUP) | 1<<31

func (w *closeWatcher) init() error {
	w.once.Do(func() {
		w.conns = make(map[uint64]watched)
		w.done = make(chan struct{})
		if w.epfd, w.err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); w.err != nil {
			close(w.done)
			return
		}
		if w.err = syscall.Pipe2(w.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); w.err != nil {
			syscall.Close(w.epfd)
			close(w.done)
			return
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
		// The pipe's token is 0; connections count from 1.
		if w.err = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, w.wake[0], &ev); w.err != nil {
			syscall.Close(w.epfd)
			syscall.Close(w.wake[0])
			syscall.Close(w.wake[1])
			close(w.done)
			return
		}
		go w.loop()
	})
	return w.err
}

// watch drops c when the client closes conn; it returns the function that
// stops watching, to call before conn is closed.
func (w *closeWatcher) watch(conn net.Conn, c *client) func() {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return watchByReading(conn, c)
	}
	rc, err := sc.SyscallConn()
	if err != nil || w.init() != nil {
		return watchByReading(conn, c)
	}
	w.mu.Lock()
	w.next++
	id := w.next
	w.conns[id] = watched{rc: rc, c: c}
	w.mu.Unlock()
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: epollEvents}
		setToken(&ev, id)
		cerr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || cerr != nil {
		w.forget(id)
		return watchByReading(conn, c)
	}
	return func() {
		if w.forget(id) {
			_ = rc.Control(func(fd uintptr) {
				_ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
			})
		}
	}
}

func (w *closeWatcher) forget(id uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.conns[id]
	delete(w.conns, id)
	return ok
}

// setToken stores id in an event's data (Fd and Pad, 8 bytes together).
func setToken(ev *syscall.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func token(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

func (w *closeWatcher) loop() {
	defer close(w.done)
	events := make([]syscall.EpollEvent, 256)
	var buf [512]byte
	for {
		n, err := syscall.EpollWait(w.epfd, events, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for i := range events[:n] {
			ev := &events[i]
			id := token(ev)
			if id == 0 {
				syscall.Close(w.epfd)
				return
			}
			w.mu.Lock()
			wc, ok := w.conns[id]
			w.mu.Unlock()
			if !ok {
				continue
			}
			gone := ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
			// The read runs while the connection cannot be closed
			// (Control holds its descriptor), so it never reads a
			// descriptor number reused by another connection.
			_ = wc.rc.Control(func(fd uintptr) {
				for !gone {
					n, err := syscall.Read(int(fd), buf[:])
					switch {
					case n > 0:
					case err == syscall.EAGAIN:
						return
					case err == syscall.EINTR:
					default:
						gone = true
					}
				}
			})
			if gone && w.forget(id) {
				wc.c.Drop(live.ReasonGone)
			}
		}
	}
}

// stop ends the watcher's goroutine (the Service is closing).
func (w *closeWatcher) stop() {
	w.mu.Lock()
	started := w.done != nil && w.err == nil
	w.mu.Unlock()
	if !started {
		return
	}
	_, _ = syscall.Write(w.wake[1], []byte{0})
	<-w.done
	syscall.Close(w.wake[0])
	syscall.Close(w.wake[1])
}
