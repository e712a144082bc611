package pgtest

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

var shared Shared

func TestMain(m *testing.M) { Main(m, &shared) }

func TestPairStartsAndTimeZonesDiffer(t *testing.T) {
	p := shared.Get(t)
	o, r := p.DBs(t)
	ctx := context.Background()
	var tzO, tzR string
	for _, x := range []struct {
		dsn string
		tz  *string
	}{{o, &tzO}, {r, &tzR}} {
		c, err := pgx.Connect(ctx, x.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, "SHOW TimeZone").Scan(x.tz); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
	}
	if tzO != "America/Los_Angeles" || tzR != "Asia/Kolkata" {
		t.Fatalf("time zones: origin %q replica %q", tzO, tzR)
	}
}

func TestPasswordUserNeedsPassword(t *testing.T) {
	p := shared.Get(t)
	ctx := context.Background()
	if p.Origin.DataDir() == "" {
		t.Skip("external server")
	}
	_, err := pgx.Connect(ctx, "host=127.0.0.1 port="+itoa(p.Origin.Port)+" user="+PasswordUser+" password=wrong dbname=postgres sslmode=disable")
	if err == nil {
		t.Fatal("connected with a wrong password")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
