package wizard

import (
	"context"

	tea "charm.land/bubbletea/v2"
)

// A job is a step's background work: it runs in a goroutine, sends what it
// reports on a channel that a re-armed command reads (bubbletea's realtime
// example), and can be cancelled. Nothing calls Program.Send.
type job struct {
	id     int
	cancel context.CancelFunc
	ch     chan any
}

type jobEventMsg struct {
	id    int
	event any
}

type jobDoneMsg struct {
	id     int
	result any
	err    error
}

var jobSeq int

// start runs f and returns the job and the command that delivers its
// events and its end.
func start(f func(ctx context.Context, emit func(any)) (any, error)) (*job, tea.Cmd) {
	jobSeq++
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{id: jobSeq, cancel: cancel, ch: make(chan any, 256)}
	go func() {
		res, err := f(ctx, func(ev any) {
			select {
			case j.ch <- jobEventMsg{id: j.id, event: ev}:
			case <-ctx.Done():
			}
		})
		j.ch <- jobDoneMsg{id: j.id, result: res, err: err}
		close(j.ch)
	}()
	return j, j.next()
}

// next waits for the job's next message.
func (j *job) next() tea.Cmd {
	return func() tea.Msg {
		m, ok := <-j.ch
		if !ok {
			return nil
		}
		return m
	}
}
