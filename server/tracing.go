package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/feedgate/feedgate/tracing"
)

// traceRequests gives each request a server span (continuing the caller's
// trace context), the parent of what the request causes: a fat ping's
// parse and append, and through them the fan-out and webhook deliveries.
func traceRequests() gin.HandlerFunc {
	return func(c *gin.Context) {
		if !tracing.Enabled() {
			c.Next()
			return
		}
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		ctx, span := tracing.StartServer(c.Request.Context(), c.Request.Header, c.Request.Method+" "+route,
			attribute.String("http.request.method", c.Request.Method), attribute.String("http.route", route))
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		status := c.Writer.Status()
		span.SetAttributes(attribute.Int("http.response.status_code", status), attribute.String("feedgate.mode", c.GetString(modeKey)))
		if p := principalOf(c); p != nil {
			span.SetAttributes(attribute.String("enduser.id", p.Login))
		}
		if status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		span.End()
	}
}
