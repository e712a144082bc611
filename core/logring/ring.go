// Package logring keeps the most recent log records in memory, numbered, so
// that a TUI log pane or a control-endpoint client can read "everything
// after record N" without ever blocking the code that logs.
package logring

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Attr is one key=value of a record, its value already formatted.
type Attr struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Record is one log record as stored in the ring.
type Record struct {
	Seq     uint64     `json:"seq"`
	Time    time.Time  `json:"time"`
	Level   slog.Level `json:"level"`
	Message string     `json:"msg"`
	Attrs   []Attr     `json:"attrs,omitempty"`
}

// Get returns the value of attribute key, or "".
func (r Record) Get(key string) string {
	for _, a := range r.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

// Text is the record as one line in the daemon's text log style:
// "12:04:28 INFO  batch applied replica=r1 events=512".
func (r Record) Text() string {
	var b strings.Builder
	b.WriteString(r.Time.Format("15:04:05"))
	b.WriteByte(' ')
	fmt.Fprintf(&b, "%-5s ", r.Level.String())
	b.WriteString(r.Message)
	for _, a := range r.Attrs {
		b.WriteByte(' ')
		b.WriteString(a.Key)
		b.WriteByte('=')
		if strings.ContainsAny(a.Value, " \t\"=") || a.Value == "" {
			fmt.Fprintf(&b, "%q", a.Value)
		} else {
			b.WriteString(a.Value)
		}
	}
	return b.String()
}

// Ring is a bounded, concurrency-safe buffer of the last records.
type Ring struct {
	mu   sync.Mutex
	buf  []Record
	next uint64 // Seq of the next record; the first is 1
	wake chan struct{}
}

// New makes a ring that keeps the last capacity records.
func New(capacity int) *Ring {
	if capacity < 1 {
		capacity = 1
	}
	return &Ring{buf: make([]Record, 0, capacity), next: 1, wake: make(chan struct{})}
}

// Add appends a record, giving it the next sequence number.
func (r *Ring) Add(rec Record) uint64 {
	r.mu.Lock()
	rec.Seq = r.next
	r.next++
	if len(r.buf) < cap(r.buf) {
		r.buf = append(r.buf, rec)
	} else {
		r.buf[int((rec.Seq-1)%uint64(cap(r.buf)))] = rec
	}
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
	return rec.Seq
}

// Last is the sequence number of the newest record (0 when empty).
func (r *Ring) Last() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next - 1
}

// Since returns up to max records with Seq > seq, oldest first. Records
// that have already left the ring are skipped.
func (r *Ring) Since(seq uint64, max int) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.next - 1
	first := last - uint64(len(r.buf)) + 1 // oldest kept
	if seq+1 > first {
		first = seq + 1
	}
	var out []Record
	for s := first; s <= last && (max <= 0 || len(out) < max); s++ {
		out = append(out, r.buf[int((s-1)%uint64(cap(r.buf)))])
	}
	return out
}

// Changed is closed when the next record is added.
func (r *Ring) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wake
}

// Handler returns a slog.Handler that stores records at or above level.
func (r *Ring) Handler(level slog.Leveler) slog.Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &handler{ring: r, level: level}
}

type handler struct {
	ring   *Ring
	level  slog.Leveler
	attrs  []Attr
	prefix string
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *handler) Handle(_ context.Context, rec slog.Record) error {
	out := Record{Time: rec.Time, Level: rec.Level, Message: rec.Message}
	out.Attrs = append(out.Attrs, h.attrs...)
	rec.Attrs(func(a slog.Attr) bool {
		out.Attrs = appendAttr(out.Attrs, h.prefix, a)
		return true
	})
	h.ring.Add(out)
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]Attr{}, h.attrs...)
	for _, a := range as {
		n.attrs = appendAttr(n.attrs, h.prefix, a)
	}
	return &n
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix = h.prefix + name + "."
	return &n
}

func appendAttr(out []Attr, prefix string, a slog.Attr) []Attr {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return out
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			out = appendAttr(out, prefix+a.Key+".", g)
		}
		return out
	}
	v := a.Value.String()
	if a.Value.Kind() == slog.KindTime {
		v = a.Value.Time().Format(time.RFC3339)
	}
	return append(out, Attr{Key: prefix + a.Key, Value: v})
}
