package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"

	"golang.org/x/crypto/acme/autocert"
)

// TLSConfig serves the public listener over TLS (HTTP/2 and HTTP/1.1),
// from certificate files or with certificates obtained automatically
// over ACME (Let's Encrypt by default).
type TLSConfig struct {
	TLSCert       string   `name:"tls-cert" env:"FEEDGATE_TLS_CERT" placeholder:"FILE" help:"PEM certificate (chain) of the public listener; with --tls-key it serves HTTPS."`
	TLSKey        string   `name:"tls-key" env:"FEEDGATE_TLS_KEY" placeholder:"FILE" help:"PEM private key of --tls-cert."`
	ACMEDomain    []string `name:"acme-domain" env:"FEEDGATE_ACME_DOMAIN" help:"Domains to obtain certificates for automatically (ACME TLS-ALPN-01: the listener must be reachable on port 443 under these names); comma-separated."`
	ACMEEmail     string   `name:"acme-email" env:"FEEDGATE_ACME_EMAIL" help:"Contact address given to the ACME certificate authority."`
	ACMEDirectory string   `name:"acme-directory" env:"FEEDGATE_ACME_DIRECTORY" help:"ACME directory URL (default: Let's Encrypt production)."`
	ACMECache     string   `name:"acme-cache" env:"FEEDGATE_ACME_CACHE" placeholder:"DIR" help:"Directory keeping ACME account keys and certificates (default: <data-dir>/acme)."`
}

func (c TLSConfig) validate() error {
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("tls-cert and tls-key go together: give both files, or neither")
	case c.TLSCert != "" && len(c.ACMEDomain) > 0:
		return errors.New("give either tls-cert/tls-key or acme-domain, not both")
	}
	return nil
}

func (c TLSConfig) enabled() bool { return c.TLSCert != "" || len(c.ACMEDomain) > 0 }

// tlsConfig returns the TLS configuration of the public listener (nil:
// plain HTTP). dataDir holds the ACME cache unless --acme-cache says
// otherwise.
func (c TLSConfig) tlsConfig(dataDir string) (*tls.Config, error) {
	switch {
	case c.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls-cert/tls-key: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}, nil
	case len(c.ACMEDomain) > 0:
		cache := c.ACMECache
		if cache == "" {
			cache = filepath.Join(dataDir, "acme")
		}
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(splitList(c.ACMEDomain)...),
			Cache:      autocert.DirCache(cache),
			Email:      c.ACMEEmail,
		}
		if c.ACMEDirectory != "" {
			m.Client = newACMEClient(c.ACMEDirectory)
		}
		cfg := m.TLSConfig() // h2, http/1.1 and acme-tls/1
		cfg.MinVersion = tls.VersionTLS12
		return cfg, nil
	}
	return nil, nil
}

// serve runs srv on ln, over TLS when cfg is set (HTTP/2 is negotiated by
// ALPN).
func serveOn(srv *http.Server, ln net.Listener, cfg *tls.Config) error {
	if cfg == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = cfg
	return srv.ServeTLS(ln, "", "")
}
