package pg

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestSQLStateChecks(t *testing.T) {
	wrap := func(code string) error { return fmt.Errorf("apply: %w", &pgconn.PgError{Code: code}) }
	cases := []struct {
		code                       string
		undefined, busy, transient bool
	}{
		{"42P01", true, false, false},
		{"3F000", true, false, false},
		{"40P01", false, true, true},
		{"55P03", false, true, true},
		{"08006", false, false, true},
		{"57P01", false, false, true},
		{"40001", false, false, true},
		{"23505", false, false, false},
	}
	for _, c := range cases {
		err := wrap(c.code)
		if IsUndefinedTable(err) != c.undefined || IsLockBusy(err) != c.busy || IsTransient(err) != c.transient {
			t.Errorf("%s: undefined %v busy %v transient %v, want %v %v %v", c.code,
				IsUndefinedTable(err), IsLockBusy(err), IsTransient(err), c.undefined, c.busy, c.transient)
		}
		if Code(err) != c.code {
			t.Errorf("Code = %q, want %q", Code(err), c.code)
		}
	}
	if Code(errors.New("plain")) != "" || IsTransient(errors.New("plain")) {
		t.Error("a non-PostgreSQL error has no SQLSTATE")
	}
}

func TestExactTextSQL(t *testing.T) {
	got := ExactTextSQL(true, Setting{"search_path", ""})
	want := "SET LOCAL DateStyle = 'ISO'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = '3'; " +
		"SET LOCAL bytea_output = 'hex'; SET LOCAL TimeZone = 'UTC'; SET LOCAL search_path = ''"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if len(ExactText) != 5 {
		t.Errorf("ExactTextSQL changed the shared list: %v", ExactText)
	}
}

func TestRetry(t *testing.T) {
	busy := &pgconn.PgError{Code: "40P01"}
	n := 0
	err := Retry(context.Background(), 5, time.Millisecond, IsLockBusy, func() error {
		n++
		if n < 3 {
			return busy
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("err %v after %d runs, want nil after 3", err, n)
	}
	n = 0
	err = Retry(context.Background(), 4, time.Millisecond, IsLockBusy, func() error { n++; return busy })
	if !errors.Is(err, busy) || n != 4 {
		t.Fatalf("err %v after %d runs, want the busy error after 4", err, n)
	}
	n = 0
	other := errors.New("syntax")
	if err := Retry(context.Background(), 4, time.Millisecond, IsLockBusy, func() error { n++; return other }); err != other || n != 1 {
		t.Fatalf("a non-retryable error is returned at once: %v after %d", err, n)
	}
}

func TestAppName(t *testing.T) {
	if AppName("") != "pgreplica" || AppName("sync shop") != "pgreplica sync shop" || ReplicaRole("r1") != "replica r1" {
		t.Error(AppName(""), AppName("sync shop"), ReplicaRole("r1"))
	}
}
