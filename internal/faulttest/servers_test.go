package faulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/notificationservice/notificationservice/internal/testdb"
)

// freePort asks the kernel for a free loopback port. Another process may
// take it before we bind it; the private servers are started once per run,
// so that race is rare and fails loudly.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// unavailable reports a private server the suite could not start: a skip
// locally, a failure under CI=true (testdb.Unavailable).
func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	testdb.Unavailable(t, "a private "+what+" for the fault suite", err)
}

// pgCluster is a PostgreSQL cluster of the suite's own, in a temporary
// directory, on a free port, trust auth, listening on loopback only.
type pgCluster struct {
	bin  string // directory holding initdb, pg_ctl
	dir  string // cluster root: data/, sockets, log
	port int
	cred *syscall.Credential // the postgres user when we run as root (initdb refuses root)
	// mounts are tmpfs mounts under dir (tablespaces), unmounted after the
	// server stops.
	mounts []string
}

// pgBinDir finds the PostgreSQL server binaries: pg_ctl on PATH (resolved
// through the Debian symlinks) or the newest /usr/lib/postgresql/*/bin.
func pgBinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(real), "initdb")); err == nil {
				return filepath.Dir(real), nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// startPostgres initialises and starts a private cluster; it is stopped
// (immediate) and removed when the test ends.
func startPostgres(t testing.TB) *pgCluster {
	t.Helper()
	bin, err := pgBinDir()
	if err != nil {
		unavailable(t, "PostgreSQL", err)
	}
	p := &pgCluster{bin: bin, port: freePort(t)}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, "PostgreSQL", fmt.Errorf("running as root and no postgres user to run initdb as: %w", err))
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parent is private to root, and the server runs as
	// postgres.
	p.dir, err = os.MkdirTemp("", "faultpg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(p.dir) })
	if p.cred != nil {
		if err := os.Chown(p.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := p.run(2*time.Minute, "initdb", "-D", p.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"); err != nil {
		unavailable(t, "PostgreSQL", fmt.Errorf("initdb: %w: %s", err, out))
	}
	if err := p.start(); err != nil {
		unavailable(t, "PostgreSQL", err)
	}
	t.Cleanup(func() {
		_, _ = p.run(time.Minute, "pg_ctl", "-D", p.data(), "-m", "immediate", "-w", "stop")
		for _, m := range p.mounts {
			if out, err := exec.Command("umount", m).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", m, err, out)
			}
		}
	})
	return p
}

func (p *pgCluster) data() string { return filepath.Join(p.dir, "data") }

// run runs one of the cluster's binaries as the cluster's owner.
func (p *pgCluster) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, name), args...)
	cmd.Dir = p.dir
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// start starts the server and waits until it accepts connections. fsync is
// off: the suite crashes the server, never the machine, so the OS keeps
// every write, and the tests run faster on a shared box.
func (p *pgCluster) start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", p.port, p.dir)
	if out, err := p.run(2*time.Minute, "pg_ctl", "-D", p.data(), "-o", opts, "-l", filepath.Join(p.dir, "server.log"), "-w", "-t", "90", "start"); err != nil {
		return fmt.Errorf("pg_ctl start: %w: %s", err, out)
	}
	return nil
}

// stopImmediate is a crash as far as the database is concerned: every
// backend is killed, no checkpoint, crash recovery on the next start. t is
// the scenario's test.
func (p *pgCluster) stopImmediate(t testing.TB) {
	t.Helper()
	if out, err := p.run(time.Minute, "pg_ctl", "-D", p.data(), "-m", "immediate", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop -m immediate: %v: %s", err, out)
	}
}

func (p *pgCluster) restart(t testing.TB) {
	t.Helper()
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
}

// url is the URL of database db on the cluster.
func (p *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// rabbitNode is a RabbitMQ node of the suite's own: its own node name,
// AMQP and distribution ports, data and log directories, no plugins.
type rabbitNode struct {
	dir    string
	name   string
	port   int
	env    []string
	server string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer
}

// startRabbit starts a private node and waits until it takes AMQP
// connections; it is killed when the test ends.
func startRabbit(t testing.TB) *rabbitNode {
	t.Helper()
	// The Debian wrapper in /usr/sbin re-runs the server through su as the
	// rabbitmq user and writes its output to /var/log; the real script sits
	// behind it.
	server := "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if _, err := os.Stat(server); err != nil {
		p, err := exec.LookPath("rabbitmq-server")
		if err != nil {
			unavailable(t, "RabbitMQ", err)
		}
		server = p
	}
	r := &rabbitNode{dir: t.TempDir(), port: freePort(t), server: server}
	r.name = "fault-" + strings.TrimPrefix(testdb.Name("n"), "n") + "@localhost"
	dist := freePort(t)
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(r.dir, "rabbitmq.conf")
	plugins := filepath.Join(r.dir, "enabled_plugins")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listeners.tcp.default = 127.0.0.1:%d\n", r.port), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plugins, []byte("[].\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.env = append(cleanEnv(),
		"HOME="+r.dir, // the Erlang cookie goes here
		"RABBITMQ_NODENAME="+r.name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(r.port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(r.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(r.dir, "log"),
		"RABBITMQ_CONFIG_FILE="+conf,
		"RABBITMQ_ENABLED_PLUGINS_FILE="+plugins,
		"RABBITMQ_ENABLED_PLUGINS=",
	)
	if err := r.start(); err != nil {
		unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(r.kill)
	return r
}

func (r *rabbitNode) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.port) }

// start runs the server in a process group of its own (the script execs
// erl, which starts helpers), so kill can take the whole group.
func (r *rabbitNode) start() error {
	r.log = &bytes.Buffer{}
	r.cmd = exec.Command(r.server)
	r.cmd.Dir = r.dir
	r.cmd.Env = r.env
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("rabbitmq-server: %w", err)
	}
	r.exited = make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	// Three minutes: a first boot takes 5 s on an idle machine and over a
	// minute on a loaded 2-core one, and a restart replays the queues' logs.
	const patience = 3 * time.Minute
	deadline := time.Now().Add(patience)
	for {
		conn, err := amqp.Dial(r.url())
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("rabbitmq-server exited: %s", r.log.String())
		default:
		}
		if time.Now().After(deadline) {
			r.kill()
			return fmt.Errorf("rabbitmq node %s did not take connections in %s: %v; its output:\n%s", r.name, patience, err, tail(r.log.Bytes(), 2048))
		}
		time.Sleep(100 * time.Millisecond) // polling a port: no event to wait on
	}
}

// describe is the node's own account of its queues and consumers, and the
// tail of its log, for a scenario that lost messages: whether the broker
// still holds them (ready, or unacked to a consumer) or no longer has them.
func (r *rabbitNode) describe() string {
	var b strings.Builder
	ctl := filepath.Join(filepath.Dir(r.server), "rabbitmqctl")
	for _, args := range [][]string{
		{"list_queues", "name", "type", "messages_ready", "messages_unacknowledged", "consumers"},
		{"list_consumers", "queue_name", "channel_pid", "prefetch_count", "active"},
		{"list_connections", "name", "pid", "state"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, ctl, append([]string{"-n", r.name, "-q"}, args...)...)
		cmd.Env = r.env
		out, err := cmd.CombinedOutput()
		cancel()
		fmt.Fprintf(&b, "$ rabbitmqctl %s (err %v)\n%s\n", strings.Join(args, " "), err, out)
	}
	if logs, _ := filepath.Glob(filepath.Join(r.dir, "log", "*.log")); len(logs) > 0 {
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			fmt.Fprintf(&b, "%s (last 8 KB):\n%s\n", filepath.Base(l), tail(data, 8192))
		}
	}
	return b.String()
}

// kill is kill -9 of the node's process group.
func (r *rabbitNode) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// restart starts the node again on the same data (durable queues and
// persistent messages survive). t is the scenario's test.
func (r *rabbitNode) restart(t testing.TB) {
	t.Helper()
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
}
