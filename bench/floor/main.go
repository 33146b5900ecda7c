// Command floor measures what this machine's kernel allows a live fan-out
// on loopback, with no gateway logic at all: N TCP connections on
// 127.0.0.1 between two processes (this one writes; a child of it reads,
// as loadgen and the gateway are two processes). Message i of --size bytes
// is due at i/rate seconds and carries that time; it is written to every
// connection (one non-blocking write(2) each, split over GOMAXPROCS
// goroutines, as the gateway's fan-out does; the messages due while the
// writers were busy go out together, as the gateway merges them), and a
// goroutine per connection reads it (as loadgen's clients do). It reports
// the due→read latency and the CPU time (user + system) per delivery of
// each side:
//
//	floor --conns 10000 --items 100 --rate 10 --size 600
//
// The gateway plus loadgen cannot do better than this on the same machine.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/feedgate/feedgate/internal/loadgen"
)

func main() {
	conns := flag.Int("conns", 10000, "connections")
	items := flag.Int("items", 100, "messages written to every connection")
	rate := flag.Float64("rate", 10, "messages per second")
	size := flag.Int("size", 600, "bytes per message (at least 16)")
	reader := flag.String("reader", "", "(internal) read side: connect to this address")
	flag.Parse()
	var err error
	if *reader != "" {
		err = read(*reader, *conns, *items, max(*size, 16))
	} else {
		err = run(*conns, *items, *rate, max(*size, 16))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(n, items int, rate float64, size int) error {
	if _, err := loadgen.RaiseNoFile(n + 64); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, "--reader", ln.Addr().String(), "--conns", strconv.Itoa(n),
		"--items", strconv.Itoa(items), "--size", strconv.Itoa(size))
	child.Stderr = os.Stderr
	report, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer child.Process.Kill()
	childOut := bufio.NewReader(report)

	servers := make([]syscall.RawConn, 0, n)
	for len(servers) < n {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		servers = append(servers, rc)
	}
	if line, err := childOut.ReadString('\n'); err != nil || line != "ready\n" {
		return fmt.Errorf("reader did not start: %q %v", line, err)
	}

	var short atomic.Int64
	msg := make([]byte, size)
	for i := 8; i < size; i++ {
		msg[i] = 'x'
	}
	workers := runtime.GOMAXPROCS(0)
	per := (n + workers - 1) / workers
	interval := time.Duration(float64(time.Second) / rate)
	cpu0 := cpuTime(syscall.RUSAGE_SELF)
	start := time.Now()
	// Open loop, as loadgen publishes: message i is due at start+i/rate and
	// carries that time. When writing falls behind, every message due by
	// then goes out in one write per connection, as the gateway merges the
	// notifications that queued up; the latency counts the lateness.
	var buf []byte
	for written := 0; written < items; {
		if wait := time.Until(start.Add(time.Duration(written) * interval)); wait > 0 {
			time.Sleep(wait) // the schedule of the messages
		}
		due := min(items, int(time.Since(start)/interval)+1)
		buf = buf[:0]
		for j := written; j < due; j++ {
			binary.LittleEndian.PutUint64(msg, uint64(start.Add(time.Duration(j)*interval).UnixNano()))
			buf = append(buf, msg...)
		}
		written = due
		var fan sync.WaitGroup
		for w := range workers {
			part := servers[min(n, w*per):min(n, (w+1)*per)]
			fan.Go(func() {
				for _, rc := range part {
					if err := writeAll(rc, buf); err != nil {
						short.Add(1)
					}
				}
			})
		}
		fan.Wait()
	}
	writeCPU := cpuTime(syscall.RUSAGE_SELF) - cpu0
	rest, err := io.ReadAll(childOut)
	if err != nil {
		return err
	}
	if err := child.Wait(); err != nil {
		return fmt.Errorf("reader: %w", err)
	}
	elapsed := time.Since(start)
	fmt.Printf("%d connections × %d messages of %d bytes at %g/s on loopback, %d writer goroutines\n", n, items, size, rate, workers)
	fmt.Printf("  written in %v; %d writes not taken whole\n", elapsed.Round(time.Millisecond), short.Load())
	fmt.Printf("  writer CPU %.2f s: %.1f µs per delivery\n", writeCPU.Seconds(), float64(writeCPU.Microseconds())/float64(n*items))
	fmt.Print(string(rest))
	return nil
}

// read is the child: it opens n connections, says "ready", reads items
// messages on each, and prints the latencies and its CPU time.
func read(addr string, n, items, size int) error {
	if _, err := loadgen.RaiseNoFile(n + 64); err != nil {
		return err
	}
	clients := make([]net.Conn, n)
	for i := range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		defer c.Close()
		clients[i] = c
	}
	lat := make([]loadgen.Latencies, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			r := bufio.NewReaderSize(c, 4096)
			msg := make([]byte, size)
			out := make(loadgen.Latencies, 0, items)
			for range items {
				if _, err := io.ReadFull(r, msg); err != nil {
					break
				}
				sent := int64(binary.LittleEndian.Uint64(msg))
				out = append(out, time.Duration(time.Now().UnixNano()-sent))
			}
			lat[i] = out
		})
	}
	cpu0 := cpuTime(syscall.RUSAGE_SELF)
	fmt.Println("ready")
	wg.Wait()
	cpu := cpuTime(syscall.RUSAGE_SELF) - cpu0
	var all loadgen.Latencies
	for _, l := range lat {
		all = append(all, l...)
	}
	fmt.Printf("  delivered %d of %d\n", len(all), n*items)
	fmt.Printf("  due→read latency %s\n", all.Summarize())
	fmt.Printf("  reader CPU %.2f s: %.1f µs per read\n", cpu.Seconds(), float64(cpu.Microseconds())/float64(max(len(all), 1)))
	return nil
}

// writeAll writes p with one non-blocking write(2); the tool's messages are
// small and the sockets drained, so a short write is reported, not retried.
func writeAll(rc syscall.RawConn, p []byte) error {
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), p)
		return werr != syscall.EINTR
	}); err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if n != len(p) {
		return errors.New("short write")
	}
	return nil
}

func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
