package server

import (
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
)

// accessLog logs one line per answered request: method, route (the
// pattern, never the query string, which may carry authorization= or
// access_token=), hub.mode, status, bytes written through the response
// writer (streams written by the fan-out straight to the socket are not
// counted), duration and the authenticated user.
func accessLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		user := ""
		if p := principalOf(c); p != nil {
			user = p.Login
		}
		log.LogAttrs(c.Request.Context(), slog.LevelInfo, "http request",
			slog.String("method", c.Request.Method),
			slog.String("route", route),
			slog.String("mode", c.GetString(modeKey)),
			slog.Int("status", c.Writer.Status()),
			slog.Int("bytes", max(c.Writer.Size(), 0)),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("user", user),
			slog.String("remote", c.RemoteIP()),
		)
	}
}
