package pgtest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// Pair is an origin and a replica server, in separate clusters.
type Pair struct {
	Origin, Replica *Cluster
}

// StartPair starts two clusters, or wraps the servers named by
// PGREPLICA_TEST_ORIGIN and PGREPLICA_TEST_REPLICA when both are set. The
// replica runs in another TimeZone than the origin, so that tests catch
// values that depend on the session time zone.
func StartPair(ctx context.Context) (*Pair, error) {
	if o, r := os.Getenv("PGREPLICA_TEST_ORIGIN"), os.Getenv("PGREPLICA_TEST_REPLICA"); o != "" && r != "" {
		oc, err := External("origin", o)
		if err != nil {
			return nil, err
		}
		rc, err := External("replica", r)
		if err != nil {
			return nil, err
		}
		return &Pair{Origin: oc, Replica: rc}, nil
	}
	var p Pair
	var errO, errR error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.Origin, errO = Start(ctx, "origin", Options{Settings: []string{"TimeZone = 'America/Los_Angeles'"}})
	}()
	go func() {
		defer wg.Done()
		p.Replica, errR = Start(ctx, "replica", Options{Settings: []string{"TimeZone = 'Asia/Kolkata'"}})
	}()
	wg.Wait()
	if errO != nil || errR != nil {
		p.Stop()
		if errO != nil {
			return nil, errO
		}
		return nil, errR
	}
	return &p, nil
}

// Stop stops and removes both clusters.
func (p *Pair) Stop() {
	if p.Origin != nil {
		p.Origin.Stop()
	}
	if p.Replica != nil {
		p.Replica.Stop()
	}
}

// DBs creates a fresh database on each server and returns their DSNs.
func (p *Pair) DBs(t testing.TB) (originDSN, replicaDSN string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o, err := p.Origin.CreateDB(ctx, "origin")
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Replica.CreateDB(ctx, "replica")
	if err != nil {
		t.Fatal(err)
	}
	return p.Origin.DSN(o), p.Replica.DSN(r)
}

// Shared hands out one Pair to all tests of a test binary; Main stops it.
type Shared struct {
	once sync.Once
	pair *Pair
	err  error
}

// Get starts the pair on first use; a test fails (never skips) when
// PostgreSQL cannot be started.
func (s *Shared) Get(t testing.TB) *Pair {
	t.Helper()
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		s.pair, s.err = StartPair(ctx)
	})
	if s.err != nil {
		t.Fatalf("start PostgreSQL: %v", s.err)
	}
	return s.pair
}

// Stop stops the pair if it was started.
func (s *Shared) Stop() {
	if s.pair != nil {
		s.pair.Stop()
	}
}

// Main runs the tests and then stops the shared pair.
func Main(m *testing.M, s *Shared) {
	code := m.Run()
	s.Stop()
	os.Exit(code)
}
