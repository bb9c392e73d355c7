package benchbin

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/notificationservice/notificationservice/internal/config"
)

// build builds the binary as `make build` does (no cgo, -trimpath, the
// Makefile's TAGS, stripped): the harness measures the executable users run,
// its size included.
func build(b *testing.B, dir string) string {
	b.Helper()
	bin := filepath.Join(dir, "notificationservice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(buildFlags(), "-o", bin, mainPackage)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// buildTags are the Makefile's TAGS (build_test.go checks they agree).
const buildTags = "nomsgpack"

const mainPackage = "github.com/notificationservice/notificationservice/cmd/notificationservice"

// buildFlags are `go build`'s flags as `make build` passes them, but the
// version stamp.
func buildFlags() []string {
	return []string{"build", "-trimpath", "-tags", buildTags, "-ldflags", "-s -w"}
}

// cleanEnv is the environment without NOTIFY_* variables: only the ones the
// harness sets apply, on top of the embedded defaults.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) && !strings.HasPrefix(kv, "RABBITMQ_") {
			out = append(out, kv)
		}
	}
	return out
}

func freePort(b *testing.B) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// process is one running service.
type process struct {
	cmd       *exec.Cmd
	addr      string
	logPath   string
	done      chan struct{}
	pprofAddr string      // the service's debug.pprofAddr, when profiled
	amqp      config.AMQP // the queues it consumes (start); zero for a bare process
}

// start runs `serve` with the default configuration plus what only this
// machine can say: the database, the broker, the queue names (ours, not the
// shared default ones) and a free port. The config file is absent.
func start(b *testing.B, bin, dir, name, dbURL string, a config.AMQP) *process {
	b.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	cmd := exec.Command(bin, "-config", filepath.Join(dir, "none.yaml"), "serve")
	cmd.Env = append(cleanEnv(),
		config.EnvName("database.url")+"="+dbURL,
		config.EnvName("http.addr")+"="+addr,
		config.EnvName("amqp.enabled")+"=true",
		config.EnvName("amqp.url")+"="+a.URL,
		config.EnvName("amqp.exchange")+"="+a.Exchange,
		config.EnvName("amqp.queue")+"="+a.Queue,
		config.EnvName("amqp.routingKey")+"="+a.RoutingKey,
		config.EnvName("amqp.deadLetterExchange")+"="+a.DeadLetterExchange,
		config.EnvName("amqp.deadLetterQueue")+"="+a.DeadLetterQueue,
	)
	// BENCH_SERVICE_ENV adds settings to the service's environment
	// ("NOTIFY_RUNTIME_GC_PERCENT=50 GOGC=off"): one binary, two settings,
	// alternated in the same minutes.
	cmd.Env = append(cmd.Env, strings.Fields(os.Getenv("BENCH_SERVICE_ENV"))...)
	// BENCH_PPROF_ADDR profiles the drain's process: go tool pprof
	// http://<addr>/debug/pprof/profile?seconds=10 while it runs.
	// BENCH_PROFILE_DIR has the harness take the profiles itself
	// (profile_test.go), on a port of its own.
	pp := ""
	if name == "serve" || name == "soak" {
		pp = os.Getenv("BENCH_PPROF_ADDR")
		if pp == "" && os.Getenv(envProfileDir) != "" {
			pp = fmt.Sprintf("127.0.0.1:%d", freePort(b))
		}
	}
	if pp != "" {
		cmd.Env = append(cmd.Env, config.EnvName("debug.pprofAddr")+"="+pp)
	}
	p := run(b, dir, name, addr, cmd)
	p.pprofAddr, p.amqp = pp, a
	return p
}

// startBare runs a bare Gin handler (bare.go's runBare) in a process of its
// own, this test binary run again: the bare handler and the service answer
// the same load generator from outside, each in its own process.
func startBare(b *testing.B, dir, name string, env ...string) *process {
	b.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(cleanEnv(), envBareAddr+"="+addr), env...)
	return run(b, dir, name, addr, cmd)
}

// run starts cmd, its output into dir/name.log, and waits until addr
// answers /readyz. It is stopped when the benchmark ends.
func run(b *testing.B, dir, name, addr string, cmd *exec.Cmd) *process {
	b.Helper()
	p := &process{cmd: cmd, addr: addr, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		_ = logf.Close()
		b.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); _ = logf.Close(); close(p.done) }()
	b.Cleanup(func() {
		p.stop()
		if b.Failed() {
			log, _ := os.ReadFile(p.logPath)
			b.Logf("%s log (last 4 KB):\n%s", name, tail(log, 4096))
		}
	})
	deadline := time.Now().Add(time.Minute)
	for !p.ready() {
		select {
		case <-p.done:
			log, _ := os.ReadFile(p.logPath)
			b.Fatalf("%s exited at start:\n%s", name, tail(log, 4096))
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not ready within a minute", name)
		}
		time.Sleep(50 * time.Millisecond) // the process starts on its own: poll
	}
	return p
}

func (p *process) ready() bool {
	resp, err := http.Get("http://" + p.addr + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop is SIGTERM, then SIGKILL if the service has not exited in 30 s. It
// reports whether the shutdown was clean.
func (p *process) stop() bool {
	select {
	case <-p.done:
		return p.cmd.ProcessState != nil && p.cmd.ProcessState.Success()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.Success()
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return false
	}
}

// memSample is a process's resident set (VmRSS) and its two parts:
// anonymous memory (RssAnon: the Go heap, stacks, runtime metadata) and
// file-backed pages (RssFile: the executable's code and read-only data the
// process has touched). A GC setting moves the first; the binary's size and
// what its code touches move the second.
type memSample struct{ rss, anon, file int64 }

// mem reads the process's memSample from /proc/<pid>/status.
func (p *process) mem() (memSample, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return memSample{}, err
	}
	defer f.Close()
	var m memSample
	fields := map[string]*int64{"VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file}
	seen := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, rest, _ := strings.Cut(s.Text(), "\t")
		if dst, ok := fields[name]; ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return memSample{}, fmt.Errorf("/proc/%d/status %s %w", p.cmd.Process.Pid, name, err)
			}
			*dst = kb << 10
			seen++
		}
	}
	if seen != len(fields) {
		return memSample{}, fmt.Errorf("no VmRSS, RssAnon and RssFile in /proc/%d/status", p.cmd.Process.Pid)
	}
	return m, nil
}

// rss is the process's resident set (VmRSS), in bytes.
func (p *process) rss() (int64, error) {
	m, err := p.mem()
	return m.rss, err
}

// String is "total (anon + file)" in MiB.
func (m memSample) String() string {
	return fmt.Sprintf("%.1f (%.1f + %.1f)", mib(m.rss), mib(m.anon), mib(m.file))
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux this harness runs on (sysconf(_SC_CLK_TCK) without cgo).
const clockTicks = 100

// cpu is the CPU time the process has used, user and system
// (/proc/<pid>/stat utime + stime).
func (p *process) cpu() (time.Duration, error) {
	st, err := readStat(p.cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	return ticks(st.utime + st.stime), nil
}

// stat is what the harness reads of /proc/<pid>/stat: the parent and the
// CPU times, in clock ticks, of the process and of its children that
// exited and were waited for.
type stat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after its closing one, where state is field 3.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return stat{}, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	var n [5]int64
	for j, k := range []int{1, 11, 12, 13, 14} { // ppid, utime, stime, cutime, cstime: fields 4, 14-17
		if n[j], err = strconv.ParseInt(f[k], 10, 64); err != nil {
			return stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return stat{ppid: int(n[0]), utime: n[1], stime: n[2], cutime: n[3], cstime: n[4]}, nil
}

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }

// rssSampler samples a process's RSS until stopped and keeps the peak
// (the sample with the largest VmRSS, with its anon and file parts).
type rssSampler struct {
	mu         sync.Mutex
	peak, last memSample
	stop       chan struct{}
	wg         sync.WaitGroup
}

func sampleRSS(p *process, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{})}
	s.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if m, err := p.mem(); err == nil {
				s.mu.Lock()
				if m.rss > s.peak.rss {
					s.peak = m
				}
				s.last = m
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	})
	return s
}

// peakSoFar is the peak of the samples taken so far.
func (s *rssSampler) peakSoFar() memSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// finish stops sampling and returns the peak and the last sample.
func (s *rssSampler) finish() (peak, last memSample) {
	close(s.stop)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.last
}

// token mints a super-admin token with the binary's own token command (the
// default development secret, as serve uses).
func token(b *testing.B, bin, dir string) string {
	b.Helper()
	cmd := exec.Command(bin, "-config", filepath.Join(dir, "none.yaml"), "token", "-user", "bench")
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// databaseURL is base with its database replaced by name.
func databaseURL(b *testing.B, base, name string) string {
	b.Helper()
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
