package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/testkit"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "feedgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS serves the public listener over TLS from certificate files:
// HTTP/2 is negotiated, the hub endpoint answers, the default public URL
// is https, and wrong combinations of TLS flags are refused.
func TestTLS(t *testing.T) {
	t.Parallel()
	bin := build(t)
	certFile, keyFile, pool := selfSigned(t)
	addr := freeAddr(t)
	dataDir := t.TempDir()
	cmd := []string{"serve", "--listen", addr, "--data-dir", dataDir, "--tls-cert", certFile, "--tls-key", keyFile, "--log-format", "json"}
	out, stderr, err := runGateway(t, bin, nil, append([]string{"config", "check"}, cmd[1:]...)...)
	if err != nil || !strings.Contains(out, "tls-cert: "+certFile) {
		t.Fatalf("config check: %v\n%s%s", err, out, stderr)
	}
	logs := &syncBuffer{}
	p := startBackground(t, bin, nil, logs, cmd...)
	defer p()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}, Timeout: 5 * time.Second}
	base := "https://" + addr
	var resp *http.Response
	testkit.Eventually(t, 15*time.Second, "the TLS listener answering /healthz", func() bool {
		resp, err = client.Get(base + "/healthz")
		return err == nil
	})
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("/healthz over TLS: %s %s, want 200 over HTTP/2.0", resp.Status, resp.Proto)
	}
	env := []string{"FEEDGATE_DATA_DIR=" + dataDir}
	token := userAdd(t, env, "tls", "--rights", "all")
	req, _ := http.NewRequest("GET", base+"/?hub.mode=list", nil)
	req.SetBasicAuth("tls", token)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("list over TLS: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	if !strings.Contains(logs.String(), `"public_url":"https://localhost:`) || !strings.Contains(logs.String(), `"tls":true`) {
		t.Errorf("the default public URL is not https:\n%s", logs.String())
	}
	// A plain HTTP request to the TLS port is refused.
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP answered on the TLS port: %s", b)
		}
	}

	for _, bad := range [][]string{
		{"--tls-cert", certFile},
		{"--tls-cert", certFile, "--tls-key", keyFile, "--acme-domain", "feeds.example.com"},
	} {
		if _, stderr, err := runGateway(t, bin, nil, append([]string{"config", "check"}, bad...)...); err == nil || !strings.Contains(stderr, "tls") {
			t.Errorf("config check %v: %v %s", bad, err, stderr)
		}
	}
	out, stderr, err = runGateway(t, bin, nil, "config", "check", "--acme-domain", "feeds.example.com", "--listen", ":443")
	if err != nil || !strings.Contains(out, "acme-domain: # flag\n- feeds.example.com") {
		t.Errorf("config check with ACME: %v\n%s%s", err, out, stderr)
	}
}

// startBackground runs the gateway binary in the background, logging to logs;
// the returned function stops it.
func startBackground(t *testing.T, bin string, env []string, logs *syncBuffer, args ...string) func() {
	t.Helper()
	c := execGateway(bin, env, args...)
	c.Stdout, c.Stderr = logs, logs
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return func() {
		c.Process.Kill()
		c.Wait()
		checkLogLines(t, logs.String())
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	}
}
