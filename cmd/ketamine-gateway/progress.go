package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress shows how a long command (import, replay) gets on, on stderr:
// a bar redrawn in place on a terminal (done/total when the total is
// known, records/s, ETA, a second count such as rejected records), one
// line every few seconds otherwise (a log, a CI job). It says nothing of
// the records themselves.
type progress struct {
	w        io.Writer
	tty      bool
	what     string // "import", "replay"
	unit     string // "records"
	extra    string // the second count's name: "rejected", "changed"
	total    int64  // -1 unknown
	start    time.Time
	every    time.Duration
	mu       sync.Mutex
	done, x  int64
	drawn    bool
	stopOnce sync.Once
	stop     chan struct{}
	stopped  chan struct{}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newProgress starts showing progress on w; stop it with finish.
func newProgress(w io.Writer, what, unit, extra string, total int64) *progress {
	p := &progress{w: w, tty: isTerminal(w), what: what, unit: unit, extra: extra, total: total, start: time.Now(),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	p.every = 5 * time.Second
	if p.tty {
		p.every = 200 * time.Millisecond
	}
	go p.loop()
	return p
}

// set records the counts so far.
func (p *progress) set(done, extra int64) {
	p.mu.Lock()
	p.done, p.x = done, extra
	p.mu.Unlock()
}

func (p *progress) loop() {
	defer close(p.stopped)
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.draw(false)
		}
	}
}

// finish draws the last state and ends the bar's line.
func (p *progress) finish() {
	p.stopOnce.Do(func() {
		close(p.stop)
		<-p.stopped
		p.draw(true)
		if p.tty && p.drawn {
			fmt.Fprintln(p.w)
		}
	})
}

// draw writes the current state.
func (p *progress) draw(final bool) {
	p.mu.Lock()
	done, x := p.done, p.x
	p.mu.Unlock()
	elapsed := time.Since(p.start)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	count := fmt.Sprintf("%d %s", done, p.unit)
	eta := ""
	if p.total >= 0 {
		count = fmt.Sprintf("%d/%d %s", done, p.total, p.unit)
		if rate > 0 && done < p.total && !final {
			eta = " ETA " + clock(time.Duration(float64(p.total-done)/rate*float64(time.Second)))
		}
	}
	second := ""
	if p.extra != "" {
		second = fmt.Sprintf(", %d %s", x, p.extra)
	}
	line := fmt.Sprintf("%s: %s, %.0f %s/s%s%s", p.what, count, rate, p.unit, second, eta)
	if !p.tty {
		if !final {
			fmt.Fprintln(p.w, line)
		}
		return
	}
	bar := ""
	if p.total > 0 {
		const width = 30
		n := int(min(done, p.total) * width / p.total)
		bar = "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + fmt.Sprintf("] %3d%% ", min(done, p.total)*100/p.total)
	}
	// \r and erase to the end of the line: the bar is redrawn in place.
	fmt.Fprintf(p.w, "\r%s%s\x1b[K", bar, line)
	p.drawn = true
}

// clock formats a duration as h:mm:ss or m:ss.
func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
