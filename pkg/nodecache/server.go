package nodecache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/lrpdns/lrpdns/pkg/corefile"
	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/coredns"
	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/loopguard"
)

// debounce collects the burst of events a ConfigMap update makes (new data
// directory, symlink swap, removal of the old one) into one reload.
const debounce = 100 * time.Millisecond

// Server is a running node-cache.
type Server struct {
	opts    Options
	log     *slog.Logger
	inst    *coredns.Instance
	active  string // hash of the Corefile being served
	gen     int
	lastErr string // the refused input last logged, so it is logged once
	hup     <-chan os.Signal

	// A loop shows only once a configuration runs (its guards' probes), so
	// the one before it is kept to go back to, and the looping one is
	// refused until the inputs change.
	current, previous []byte
	refused           string // hash of the Corefile refused for a loop
	refusedErr        error
}

// Start reads the inputs and starts serving them. Unlike a reload, invalid
// input at start is an error: there is no last good configuration.
func Start(opts Options, log *slog.Logger) (*Server, error) {
	registerMetrics()
	text, err := opts.Corefile()
	if err != nil {
		return nil, err
	}
	limits, err := opts.limits()
	if err != nil {
		return nil, err
	}
	inst, err := coredns.Start(text, limits)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: log, inst: inst}
	frontMetrics.set(inst.Front())
	s.applied(text)
	log.Info("serving", "config", s.active, "listen", s.Addrs())
	return s, nil
}

// Addrs are the DNS listeners' addresses.
func (s *Server) Addrs() []net.Addr { return s.inst.Addrs() }

// ActiveHash is the hash of the Corefile being served.
func (s *Server) ActiveHash() string { return s.active }

// ReloadOn makes Serve re-read its inputs whenever c delivers (SIGHUP).
func (s *Server) ReloadOn(c <-chan os.Signal) { s.hup = c }

// Serve reloads on input changes until ctx ends, then drains and stops.
func (s *Server) Serve(ctx context.Context) error {
	w := s.watch()
	defer w.close()
	go releaseMemory(ctx)
	tick := time.NewTicker(s.opts.CheckInterval)
	defer tick.Stop()
	var pending <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			s.log.Info("shutting down: readiness off, then lameduck, then stop", "lameduck", s.opts.Lameduck)
			return s.inst.Shutdown()
		case ev := <-w.events():
			w.readd(ev)
			pending = time.After(debounce)
		case <-pending:
			pending = nil
			s.reload()
		case <-tick.C:
			s.reload()
		case sig := <-s.hup:
			s.log.Info("reloading on signal", "signal", sig.String())
			s.reload()
		case l := <-s.inst.Loops():
			s.loopFound(l)
		}
	}
}

// reload re-reads the inputs and applies them if they changed. Anything that
// goes wrong leaves the running configuration serving.
func (s *Server) reload() {
	text, err := s.opts.Corefile()
	switch {
	case err == nil && corefile.Hash(text) == s.refused:
		err = s.refusedErr
	case err == nil && corefile.Hash(text) == s.active:
		s.lastErr = ""
		configLastReloadOK.Set(1)
		return
	case err == nil:
		err = s.inst.Restart(text)
	}
	if err != nil {
		s.refuse(err)
		return
	}
	prev := s.active
	s.refused, s.refusedErr = "", nil // inputs changed: a loop is looked for again
	s.applied(text)
	s.log.Info("reloaded", "config", s.active, "previous", prev, "generation", s.gen)
}

// refuse counts and logs err once per distinct error.
func (s *Server) refuse(err error) {
	configLastReloadOK.Set(0)
	if err.Error() != s.lastErr {
		s.lastErr = err.Error()
		configErrors.Inc()
		s.log.Error("refused new configuration; still serving the last good one", "err", err, "config", s.active)
	}
}

// loopFound refuses the running configuration, whose guard found a loop:
// back to the configuration before it, or, with none (the loop was there
// at start), on with the looping zone answering SERVFAIL.
func (s *Server) loopFound(l loopguard.Loop) {
	s.refused, s.refusedErr = s.active, fmt.Errorf("refused: %w", l)
	if s.previous == nil {
		configLastReloadOK.Set(0)
		configErrors.Inc()
		s.lastErr = s.refusedErr.Error()
		s.log.Error("forwarding loop in the configuration; its zone answers SERVFAIL until the inputs change",
			"err", l, "zone", l.Zone, "config", s.active)
		return
	}
	if err := s.inst.Restart(s.previous); err != nil {
		s.log.Error("forwarding loop in the new configuration, and the last good one failed to start again; the zone answers SERVFAIL",
			"err", l, "zone", l.Zone, "restartErr", err, "config", s.active)
		s.refuse(s.refusedErr)
		return
	}
	looping := s.active
	s.applied(s.previous)
	s.previous = nil
	s.refuse(s.refusedErr)
	s.log.Info("back on the last good configuration", "config", s.active, "refused", looping, "generation", s.gen)
}

func (s *Server) applied(text []byte) {
	s.previous, s.current = s.current, text
	s.lastErr = ""
	s.gen++
	s.active = corefile.Hash(text)
	configInfo.Reset()
	configInfo.WithLabelValues(s.active).Set(1)
	configGeneration.Set(float64(s.gen))
	configLastReloadOK.Set(1)
}

// watcher reports file events in the ConfigMap directory, resolv.conf's
// directory and the zones file's, and in their parents, so that a directory deleted and created
// again (a volume replaced) is watched again at once. Watching directories
// catches the ConfigMap volume's symlink swap; the periodic check covers
// what sends no events.
type watcher struct {
	w    *fsnotify.Watcher
	dirs []string
}

func (s *Server) watch() *watcher {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Error("file events unavailable; relying on the periodic check", "err", err, "interval", s.opts.CheckInterval)
		return &watcher{}
	}
	w := &watcher{w: fw, dirs: []string{filepath.Clean(s.opts.KubeDNSConfigDir), filepath.Dir(s.opts.ResolvConf)}}
	if s.opts.ZonesFile != "" {
		w.dirs = append(w.dirs, filepath.Dir(s.opts.ZonesFile))
	}
	for _, dir := range w.dirs {
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := fw.Add(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Info("not watching directory; relying on the periodic check", "dir", d, "err", err)
			}
		}
	}
	go func() {
		for err := range fw.Errors {
			s.log.Info("file watch error", "err", err)
		}
	}()
	return w
}

// events is nil (never ready) without a watcher.
func (w *watcher) events() <-chan fsnotify.Event {
	if w.w == nil {
		return nil
	}
	return w.w.Events
}

// readd watches a watched directory again when it is created anew.
func (w *watcher) readd(ev fsnotify.Event) {
	if w.w != nil && ev.Has(fsnotify.Create) && slices.Contains(w.dirs, filepath.Clean(ev.Name)) {
		_ = w.w.Add(ev.Name)
	}
}

func (w *watcher) close() {
	if w.w != nil {
		_ = w.w.Close()
	}
}
