package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTick is USER_HZ, the unit of CPU times in /proc/PID/stat; it is 100
// on every Linux architecture Go supports.
const clockTick = 100

// RSS returns the resident set size of process pid (VmRSS), in bytes.
func RSS(pid int) (int64, error) {
	return procStatusKB(pid, "VmRSS:")
}

// procStatusKB returns a "<key> <n> kB" line of /proc/PID/status, in
// bytes.
func procStatusKB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the gateway's memory (--gateway-pid %d): %w", pid, err)
	}
	i := bytes.Index(b, []byte("\n"+key))
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/status has no %s line (is %d a running process?)", pid, key, pid)
	}
	rest := b[i+1+len(key):]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	f := bytes.Fields(rest) // "123456" "kB"
	if len(f) != 2 || string(f[1]) != "kB" {
		return 0, fmt.Errorf("/proc/%d/status: unexpected %s line %q", pid, key, rest)
	}
	kb, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/status: %s %q: %w", pid, key, f[0], err)
	}
	return kb << 10, nil
}

// CPUTime returns the user+system CPU time process pid has used (pid 0:
// this process).
func CPUTime(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: unexpected format", path)
	}
	f := bytes.Fields(b[i+1:])
	// After ')': state(3) ... utime(14) stime(15): indexes 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: unexpected format", path)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: unexpected utime/stime %q %q", path, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// Syscalls returns the read and write system calls process pid has made
// (/proc/PID/io syscr and syscw; pid 0: this process).
func Syscalls(pid int) (reads, writes int64, err error) {
	path := "/proc/self/io"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/io", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		switch string(k) {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes, nil
}

// CPUMeter measures CPU use of this process and, when pid > 0, of the
// gateway over an interval.
type CPUMeter struct {
	pid             int
	name            string
	load            float64
	start           time.Time
	self0, gateway0 time.Duration
	selfOK, gwOK    bool
	r0, w0          int64
}

// StartCPU starts measuring; name says what pid is in reports.
func StartCPU(pid int, name string) *CPUMeter {
	m := &CPUMeter{pid: pid, name: name, start: time.Now(), load: LoadAvg()}
	m.self0, _ = CPUTime(0)
	if pid > 0 {
		var err error
		m.gateway0, err = CPUTime(pid)
		m.gwOK = err == nil
		m.r0, m.w0, _ = Syscalls(pid)
	}
	return m
}

// CPUUse is CPU time used over a wall-clock interval, as cores busy.
type CPUUse struct {
	Wall time.Duration `json:"wall_ns"`
	Self time.Duration `json:"loadgen_cpu_ns"`
	// Server is the CPU time of the measured server process (Name).
	Server time.Duration `json:"server_cpu_ns,omitempty"`
	Name   string        `json:"server,omitempty"`
	// ServerReads and ServerWrites count the server's read and write
	// system calls (/proc/PID/io), a cost that does not depend on how
	// busy the machine is.
	ServerReads  int64 `json:"server_read_syscalls,omitempty"`
	ServerWrites int64 `json:"server_write_syscalls,omitempty"`
	// LoadAvg is the machine's 1-minute load average when the measure began.
	LoadAvg float64 `json:"loadavg"`
}

// Stop ends the measure.
func (m *CPUMeter) Stop() CPUUse {
	u := CPUUse{Wall: time.Since(m.start), Name: m.name, LoadAvg: m.load}
	if s, err := CPUTime(0); err == nil {
		u.Self = s - m.self0
	}
	if m.gwOK {
		if g, err := CPUTime(m.pid); err == nil {
			u.Server = g - m.gateway0
		}
		if r, w, err := Syscalls(m.pid); err == nil {
			u.ServerReads, u.ServerWrites = r-m.r0, w-m.w0
		}
	}
	return u
}

func (u CPUUse) String() string {
	if u.Wall <= 0 {
		return ""
	}
	s := fmt.Sprintf("loadgen %.2f cores", u.Self.Seconds()/u.Wall.Seconds())
	if u.Server > 0 {
		s += fmt.Sprintf(", %s %.2f cores", u.Name, u.Cores())
	}
	s += fmt.Sprintf(" (machine load average %.1f at start)", u.LoadAvg)
	return s
}

// LoadAvg returns the 1-minute load average (0 when unknown): other work on
// the machine skews every figure, so reports print it.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(string(f[0]), 64)
	return v
}

// Cores is the average number of cores the server used.
func (u CPUUse) Cores() float64 {
	if u.Wall <= 0 {
		return 0
	}
	return u.Server.Seconds() / u.Wall.Seconds()
}
