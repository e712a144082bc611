package theme

import "testing"

func TestDetect(t *testing.T) {
	cases := []struct {
		name        string
		flag        string
		env         map[string]string
		mono, ascii bool
	}{
		{"xterm auto", "auto", map[string]string{"TERM": "xterm-256color", "LANG": "en_US.UTF-8"}, false, false},
		{"NO_COLOR", "auto", map[string]string{"TERM": "xterm", "NO_COLOR": "1", "LANG": "C.UTF-8"}, true, false},
		{"dumb", "auto", map[string]string{"TERM": "dumb"}, true, true},
		{"never", "never", map[string]string{"TERM": "xterm"}, true, false},
		{"always beats NO_COLOR", "always", map[string]string{"TERM": "xterm", "NO_COLOR": "1"}, false, false},
		{"C locale", "auto", map[string]string{"TERM": "xterm", "LANG": "C"}, false, true},
		{"LC_ALL wins", "auto", map[string]string{"TERM": "xterm", "LC_ALL": "POSIX", "LANG": "en_US.UTF-8"}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mono, ascii := Detect(c.flag, func(k string) string { return c.env[k] })
			if mono != c.mono || ascii != c.ascii {
				t.Errorf("Detect = mono %v ascii %v, want %v %v", mono, ascii, c.mono, c.ascii)
			}
		})
	}
}

func TestStateWordsHaveStyles(t *testing.T) {
	th := New(false, false)
	for _, w := range []string{"OK", "MISSING", "NO PK", "DISABLED", "STREAMING", "CATCHUP", "PAUSED", "ERROR"} {
		if th.StateStyle(w).Render(w) == w {
			t.Errorf("%s is not styled in colour", w)
		}
	}
}
