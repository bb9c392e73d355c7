package benchbin

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// envProfileDir names a directory: with it set, the harness profiles the
// service in the phases that matter, the drain and the REST send's closed
// loop, and writes <phase>.cpu.pprof and <phase>.allocs.pprof there (go
// tool pprof -top -sample_index=alloc_space <file>). The service's own
// pprof endpoint (debug.pprofAddr) takes them, so what is profiled is the
// built binary under the harness's load, not an in-process imitation.
const envProfileDir = "BENCH_PROFILE_DIR"

// profile takes a CPU profile and an allocations profile of p over the
// next d (both deltas over the phase, not since start) into
// $BENCH_PROFILE_DIR, and returns a wait for them; with BENCH_PROFILE_DIR
// unset it does nothing.
func profile(b *testing.B, p *process, phase string, d time.Duration) (wait func()) {
	dir := os.Getenv(envProfileDir)
	if dir == "" || p.pprofAddr == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	secs := max(int(d/time.Second), 1)
	var wg sync.WaitGroup
	for kind, path := range map[string]string{"cpu": "profile", "allocs": "allocs"} {
		wg.Go(func() {
			if err := fetchProfile(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", p.pprofAddr, path, secs),
				filepath.Join(dir, phase+"."+kind+".pprof")); err != nil {
				b.Errorf("profile %s: %v", phase, err)
			}
		})
	}
	return wg.Wait
}

func fetchProfile(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
