package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// revision is the VCS revision the binary was built from, when the build
// recorded it.
func revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

func versionLine() string {
	s := fmt.Sprintf("feedgate %s (%s, %s/%s", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if r := revision(); r != "" {
		s += ", " + r
	}
	return s + ")"
}

// VersionCmd is `gateway version`.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run() error {
	fmt.Println(versionLine())
	return nil
}

// buildInfo is the feedgate_build_info gauge: always 1, labelled with the
// version, so dashboards can show what each node runs.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "feedgate_build_info",
		Help: "Always 1; labelled with the version, Go version and VCS revision of the running binary.",
	}, []string{"version", "goversion", "revision"})
	g.WithLabelValues(version, runtime.Version(), revision()).Set(1)
	return g
}
