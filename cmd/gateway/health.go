package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// HealthCmd is `gateway health`, for container health checks.
type HealthCmd struct {
	URL string `default:"http://127.0.0.1:8080/healthz" env:"FEEDGATE_HEALTH_URL" help:"Health endpoint to check."`
}

// Run exits non-zero unless the endpoint answers 200.
func (c *HealthCmd) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", c.URL, resp.Status)
	}
	return nil
}
