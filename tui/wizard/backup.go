package wizard

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"pgreplica/core/backup"
	"pgreplica/tui/screen"
)

type backupStep struct {
	editing  bool
	file     screen.Input
	prepared bool
	progress backup.Progress
	dbSize   int64
	result   string
	err      error
	skipped  bool
}

func (b *backupStep) prepare(m *Model) {
	if b.prepared {
		return
	}
	b.prepared = true
	db := "origin"
	if r := m.connect.report; r != nil && r.Database != "" {
		db = r.Database
	}
	b.file = screen.Input{Prompt: "file     ", Value: backup.DefaultFile(m.deps.BackupDir, db, m.env.Now())}
	b.editing = true
}

func (b *backupStep) event(ev any) {
	if p, ok := ev.(backup.Progress); ok {
		b.progress = p
	}
}

func (m *Model) backupKey(msg tea.KeyPressMsg) tea.Cmd {
	b := &m.backup
	if b.editing {
		switch msg.String() {
		case "enter":
			return m.runBackup()
		case "esc":
			b.editing = false
			return m.back()
		case "S":
			return m.askSkipBackup()
		default:
			b.file.Update(msg)
		}
		return nil
	}
	switch msg.String() {
	case "enter":
		if m.states[stepBackup] == done {
			return m.next()
		}
		return m.runBackup()
	case "e", "r":
		b.editing = true
	case "S":
		return m.askSkipBackup()
	case "esc":
		return m.back()
	}
	return nil
}

func (m *Model) askSkipBackup() tea.Cmd {
	db := "origin"
	if r := m.connect.report; r != nil && r.Database != "" {
		db = r.Database
	}
	m.prompt = &screen.Prompt{
		Level: 3,
		Title: "Continue without a backup from this wizard?",
		Body: []string{
			"Only do this if you already have a recent backup of " + db + " (pg_dump, pgBackRest, a snapshot) that you know how to restore.",
			"If step 4 or later goes wrong, that backup is your only way back.",
			"For the offline path, pause the applications writing to " + db + " now and reopen them after the smoke test.",
		},
		Expect: db,
		OnYes: func() tea.Msg {
			return skipBackupMsg{}
		},
	}
	return nil
}

type skipBackupMsg struct{}

func (m *Model) runBackup() tea.Cmd {
	b := &m.backup
	file := strings.TrimSpace(b.file.Value)
	if file == "" {
		return screen.Flash(screen.Bad, "enter a file name for the backup")
	}
	if strings.HasPrefix(file, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			file = filepath.Join(home, file[2:])
		}
	}
	pgDump := ""
	if r := m.connect.report; r != nil {
		pgDump = r.PgDump
	}
	if pgDump == "" {
		return screen.Flash(screen.Bad, "no suitable pg_dump was found (see step 1): install it, or S to skip with a backup of your own")
	}
	b.editing, b.err, b.result, b.progress = false, nil, "", backup.Progress{}
	b.file.Value = file
	dsn := m.cfg.Origin.DSN
	m.env.Audit("wizard: backup started", "file", file)
	return m.run(func(ctx context.Context, emit func(any)) (any, error) {
		return nil, backup.Run(ctx, backup.Options{DSN: dsn, File: file, PgDump: pgDump}, func(p backup.Progress) { emit(p) })
	})
}

func (m *Model) backupDone(err error) tea.Cmd {
	b := &m.backup
	if err != nil {
		b.err = err
		b.editing = true
		m.states[stepBackup] = failed
		return screen.Flash(screen.Bad, err.Error())
	}
	b.result = fmt.Sprintf("%s written: %s in %s", b.file.Value, screen.Bytes(b.progress.Bytes), b.progress.Elapsed.Round(100*time.Millisecond))
	m.states[stepBackup] = done
	m.env.Audit("wizard: backup written", "file", b.file.Value, "bytes", b.progress.Bytes)
	return screen.Flash(screen.Good, "backup written · enter continues")
}

func (m *Model) backupView(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	b := &m.backup
	var lines []string
	if n := m.notes[stepBackup]; n != "" && m.states[stepBackup] == done && b.result == "" && !b.skipped {
		return n + ".\n\nenter continues."
	}
	lines = append(lines, screen.Wrap("Nothing has been changed yet. This backup is the way back if anything below goes wrong.", w)...)
	lines = append(lines, "")
	lines = append(lines, b.file.View(b.editing))
	lines = append(lines, "format   custom (-Fc), restore with pg_restore")
	if r := m.connect.report; r != nil {
		lines = append(lines, "pg_dump  "+r.PgDump)
	}
	lines = append(lines, "")
	switch {
	case m.job != nil:
		lines = append(lines, fmt.Sprintf("%s pg_dump running   %s written   %s",
			g.Spinner[m.spin%len(g.Spinner)], screen.Bytes(b.progress.Bytes), screen.Clock(b.progress.Elapsed)))
		lines = append(lines, "", "esc stops pg_dump and removes the partial file")
	case b.result != "":
		lines = append(lines, t.OK.Render(g.Check+" "+b.result))
		lines = append(lines, "", "Restore: pg_restore -d <database> "+b.file.Value, "", "enter continues")
	case b.skipped:
		lines = append(lines, t.Warn.Render("skipped: you confirmed a backup of your own"), "", "enter continues")
	default:
		if b.err != nil {
			for _, l := range screen.Wrap(b.err.Error(), w-2) {
				lines = append(lines, t.Err.Render(l))
			}
			lines = append(lines, "")
		}
		lines = append(lines, "enter runs pg_dump · S skips (you confirm a backup of your own)")
		lines = append(lines, screen.Wrap("Offline path: pause the applications that write to the origin before the backup, and reopen them after the smoke test.", w)...)
	}
	return strings.Join(lines, "\n")
}
