package tui

import (
	"context"
	"log/slog"
)

type ctxT = context.Context
type slogLevel = slog.Level
