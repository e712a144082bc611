package alert

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"pgreplica/core/replay"
	"pgreplica/core/status"
)

// queueLen is how many messages a channel holds while it is failing or
// rate-capped; more are dropped (and logged).
const queueLen = 64

// Options tune an Alerter; zero values are fine.
type Options struct {
	Tick       time.Duration // how often status is looked at (default 1s)
	MaxPerHour int           // per-channel rate cap (default config.DefaultMaxPerHr)
	MinBackoff time.Duration // first retry of a failing channel (default 1s)
	MaxBackoff time.Duration // longest wait between retries (default 5m)
	Attempts   int           // tries per message before it is dropped (default 8)
	// Explain, when set, adds to the first message of a stopped replica
	// what `pgreplica why` says of it (the failing event, its key, the
	// statement's error and a hint). It is called from the alerter's own
	// goroutine, never from the engine's.
	Explain func(ctx context.Context, replica string) string
}

// Alerter sends the alerts of one engine.
type Alerter struct {
	set     string
	log     *slog.Logger
	opt     Options
	senders []*sender
	host    string

	mu      sync.Mutex
	tracker *Tracker
	closed  bool
}

// New makes an alerter for set with channels and rules.
func New(set string, channels []Channel, rules Rules, log *slog.Logger, opt Options) *Alerter {
	if opt.Tick <= 0 {
		opt.Tick = time.Second
	}
	if opt.MaxPerHour <= 0 {
		opt.MaxPerHour = 30
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 5 * time.Minute
	}
	if opt.Attempts <= 0 {
		opt.Attempts = 8
	}
	host, _ := os.Hostname()
	a := &Alerter{set: set, log: log, opt: opt, host: host, tracker: NewTracker(set, rules)}
	for _, c := range channels {
		burst := min(opt.MaxPerHour, 10)
		a.senders = append(a.senders, &sender{ch: c, q: make(chan Message, queueLen), log: log.With("channel", c.Name()),
			lim: rate.NewLimiter(rate.Every(time.Hour/time.Duration(opt.MaxPerHour)), burst), opt: opt})
	}
	return a
}

// OnEvent takes the engine's events (replay.Options.OnEvent): it only
// records conflicts under a short lock and never blocks.
func (a *Alerter) OnEvent(ev replay.Event) {
	if c, ok := ev.(replay.ConflictFound); ok {
		a.mu.Lock()
		a.tracker.AddConflict(c.Replica, c.Conflict, time.Now())
		a.mu.Unlock()
	}
}

// Notify queues an informational message (engine started or stopped).
func (a *Alerter) Notify(k Kind, summary, detail string) {
	a.send(Message{Set: a.set, Kind: k, Status: Info, Summary: summary, Detail: detail, At: time.Now()})
}

func (a *Alerter) send(m Message) {
	if m.Host == "" {
		m.Host = a.host
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.log.Info("alert", "kind", string(m.Kind), "status", string(m.Status), "replica", m.Replica, "summary", m.Summary)
	for _, s := range a.senders {
		select {
		case s.q <- m:
		default:
			s.log.Warn("alert queue full; message dropped", "summary", m.Summary)
		}
	}
}

// Run watches snapshots (the engine's status in the one model) every tick
// until ctx ends, and sends the messages due; the channels deliver until
// Close. snapshot must be cheap and must not block.
func (a *Alerter) Run(ctx context.Context, snapshot func() []status.Replica) {
	t := time.NewTicker(a.opt.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.mu.Lock()
			ms := a.tracker.Flush(time.Now())
			a.mu.Unlock()
			for _, m := range ms {
				a.send(m)
			}
			return
		case <-t.C:
		}
		now := time.Now()
		reps := snapshot()
		a.mu.Lock()
		ms := a.tracker.Observe(now, reps)
		a.mu.Unlock()
		for _, m := range ms {
			if m.Kind == Stopped && m.Status == Firing && !m.Reminder && a.opt.Explain != nil {
				ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
				if why := a.opt.Explain(ectx, m.Replica); why != "" {
					m.Detail += "\n\n" + why
				}
				cancel()
			}
			a.send(m)
		}
	}
}

// Start starts the channels' senders; they run until Close.
func (a *Alerter) Start() {
	for _, s := range a.senders {
		s.done = make(chan struct{})
		s.stop = make(chan struct{})
		go s.run()
	}
}

// Close delivers what is queued, waiting at most wait, then stops.
func (a *Alerter) Close(wait time.Duration) {
	deadline := time.After(wait)
	a.mu.Lock()
	a.closed = true
	for _, s := range a.senders {
		close(s.q)
	}
	a.mu.Unlock()
	for _, s := range a.senders {
		select {
		case <-s.done:
		case <-deadline:
			// Stop the rest; an attempt in flight ends by its own timeout
			// (a hanging server may not heed the cancellation).
			for _, s := range a.senders {
				select {
				case <-s.stop:
				default:
					close(s.stop)
				}
			}
			return
		}
	}
}

// sender is one channel's queue, rate cap and retries.
type sender struct {
	ch   Channel
	q    chan Message
	lim  *rate.Limiter
	log  *slog.Logger
	opt  Options
	stop chan struct{}
	done chan struct{}
}

func (s *sender) run() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for m := range s.q {
		if !s.lim.Allow() {
			s.log.Warn("alert rate cap reached; waiting", "max_per_hour", s.opt.MaxPerHour)
			if s.lim.Wait(ctx) != nil {
				return
			}
		}
		backoff := s.opt.MinBackoff
		for attempt := 1; ; attempt++ {
			sctx, scancel := context.WithTimeout(ctx, sendTimeout)
			err := s.ch.Send(sctx, m)
			scancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if attempt >= s.opt.Attempts {
				s.log.Error("alert not delivered; dropped", "summary", m.Summary, "attempts", attempt, "err", err.Error())
				break
			}
			s.log.Warn("alert channel failed; retrying", "err", err.Error(), "attempt", attempt, "retry_in", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, s.opt.MaxBackoff)
		}
	}
}

// SendTest sends one test message to every channel at once and returns
// each channel's error (nil when delivered), in channel order.
func SendTest(ctx context.Context, set string, channels []Channel) []error {
	host, _ := os.Hostname()
	m := Message{Set: set, Kind: Test, Status: Info, Summary: "test message from pgreplica alerts test",
		Detail: "If you read this, this channel works.", At: time.Now(), Host: host}
	errs := make([]error, len(channels))
	var wg sync.WaitGroup
	for i, c := range channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, sendTimeout)
			defer cancel()
			errs[i] = c.Send(sctx, m)
		}()
	}
	wg.Wait()
	return errs
}
