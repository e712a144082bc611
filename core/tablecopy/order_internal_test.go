package tablecopy

import (
	"strings"
	"testing"

	"pgreplica/core/pg"
)

func TestOrderForCopyParentsFirstAndCyclesDoNotWait(t *testing.T) {
	mk := func(name string, size int64) *tableInfo {
		return &tableInfo{table: pg.Table{Schema: "public", Name: name}, size: size}
	}
	customer, rental, payment, big, a, b := mk("customer", 10), mk("rental", 50), mk("payment", 90), mk("big", 100), mk("a", 5), mk("b", 6)
	rental.refs = []*tableInfo{customer}
	payment.refs = []*tableInfo{rental, customer}
	a.refs = []*tableInfo{b} // a cycle: a -> b -> a
	b.refs = []*tableInfo{a}
	infos := []*tableInfo{payment, a, rental, big, customer, b}
	orderForCopy(infos)
	var names []string
	for _, ti := range infos {
		names = append(names, ti.table.Name)
	}
	// depth 0 by size: big, b (its reference to a dropped), customer; then
	// a and rental (depth 1); then payment.
	if got, want := strings.Join(names, " "), "big customer b rental a payment"; got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
	if len(a.refs)+len(b.refs) != 1 {
		t.Fatalf("the cycle a<->b keeps %d waits, want 1", len(a.refs)+len(b.refs))
	}
}
