package operator

import (
	"context"
	"sync"
	"time"
)

// The backlog over time: the outbox keeps no history of its counts, so the
// service samples them (Stats, one grouped query) at a fixed interval while
// the process runs and keeps the last BacklogWindow of samples in memory.
// Every replica samples the same shared database, so their charts agree;
// a process shows nothing from before it started.

// BacklogWindow is how far back BacklogHistory reaches.
const BacklogWindow = 6 * time.Hour

// BacklogSample is the backlog of every destination at one time.
type BacklogSample struct {
	At           time.Time
	Destinations []Backlog
}

// history is the ring of samples.
type history struct {
	mu      sync.Mutex
	samples []BacklogSample
	stop    chan struct{}
	done    chan struct{}
}

// Sample reads the backlog now and keeps it; samples older than
// BacklogWindow are dropped. A database that does not answer leaves no
// sample (the gap shows on the chart).
func (s *Service) Sample(ctx context.Context) error {
	r, err := s.Ready(ctx)
	if err != nil {
		return err
	}
	if !r.Ready {
		return nil
	}
	now := s.now()
	s.hist.mu.Lock()
	defer s.hist.mu.Unlock()
	keep := s.hist.samples[:0]
	for _, x := range s.hist.samples {
		if now.Sub(x.At) <= BacklogWindow {
			keep = append(keep, x)
		}
	}
	s.hist.samples = append(keep, BacklogSample{At: now, Destinations: r.Backlog})
	return nil
}

// BacklogHistory returns the samples of the last BacklogWindow, oldest
// first. Like Ready, it spans every tenant (counts only, no records).
func (s *Service) BacklogHistory() []BacklogSample {
	s.hist.mu.Lock()
	defer s.hist.mu.Unlock()
	return append([]BacklogSample(nil), s.hist.samples...)
}

// StartSampling samples the backlog now and then every interval until
// StopSampling. Calling it twice does nothing.
func (s *Service) StartSampling(interval time.Duration) {
	s.hist.mu.Lock()
	defer s.hist.mu.Unlock()
	if s.hist.stop != nil || interval <= 0 {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	s.hist.stop, s.hist.done = stop, done
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = s.Sample(ctx) // a failed sample is a gap, reported by readiness
			cancel()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
}

// StopSampling stops the sampler and waits for it; safe to call twice or
// without StartSampling.
func (s *Service) StopSampling() {
	s.hist.mu.Lock()
	stop, done := s.hist.stop, s.hist.done
	s.hist.stop, s.hist.done = nil, nil
	s.hist.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
}
