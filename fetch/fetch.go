package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Fetcher defaults.
const (
	DefaultMaxBody        = 10 << 20
	DefaultConnectTimeout = 5 * time.Second
	DefaultHeaderTimeout  = 15 * time.Second
	DefaultFetchTimeout   = 30 * time.Second
	DefaultMaxRedirects   = 5
	// errorBodyLimit bounds what is read of a non-2xx answer: enough for
	// an error message, not a whole page.
	errorBodyLimit = 64 << 10
)

// Options configure a Fetcher. Zero values take the defaults.
type Options struct {
	// AllowPrivate lets the fetcher connect to loopback, private,
	// link-local and other non-public addresses (--allow-private).
	AllowPrivate bool
	// AllowAddrs are dial addresses ("ip:port") exempt from the address
	// guard although not public: a known internal service, or in tests a
	// loopback server standing for a public host.
	AllowAddrs []netip.AddrPort
	// UserAgent is sent with every request (see UserAgent).
	UserAgent string
	// MaxBody bounds a response body after decompression
	// (DefaultMaxBody when 0).
	MaxBody int64
	// ConnectTimeout bounds connecting (TCP and TLS handshake),
	// HeaderTimeout waiting for the response headers, Timeout the whole
	// exchange including reading the body.
	ConnectTimeout time.Duration
	HeaderTimeout  time.Duration
	Timeout        time.Duration
	// MaxRedirects is how many redirects are followed (DefaultMaxRedirects
	// when 0; negative follows none).
	MaxRedirects int
	// Resolver resolves host names (net.DefaultResolver when nil).
	Resolver *net.Resolver
	// Dial, when set, opens connections instead of the system's dialer,
	// once the address guard has passed the address (an IP and port). Tests
	// run in a testing/synctest bubble serve their peers on an in-memory
	// network this way.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Fetcher is feedgate's one HTTP client for talking to the outside world:
// fetching feeds, talking to upstream hubs, delivering webhooks. Every
// connection it opens is checked after DNS resolution, on every redirect,
// against the address guard.
type Fetcher struct {
	opts   Options
	client *http.Client
}

// UserAgent returns the User-Agent feedgate sends:
// "feedgate/<version> (+<public-url>)".
func UserAgent(version, publicURL string) string {
	if version == "" {
		version = "dev"
	}
	if publicURL == "" {
		return "feedgate/" + version
	}
	return "feedgate/" + version + " (+" + publicURL + ")"
}

// New returns a fetcher with the options.
func New(o Options) *Fetcher {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = DefaultHeaderTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultFetchTimeout
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = DefaultMaxRedirects
	}
	if o.UserAgent == "" {
		o.UserAgent = UserAgent("", "")
	}
	f := &Fetcher{opts: o}
	dialer := &net.Dialer{
		Timeout:   o.ConnectTimeout,
		KeepAlive: 30 * time.Second,
		Resolver:  o.Resolver,
		// The guard runs on the resolved address of every connection, so a
		// name that resolves (or re-resolves) to a refused address, and
		// every redirect target, is checked too.
		ControlContext: func(_ context.Context, network, address string, _ syscall.RawConn) error {
			return f.guard(network, address)
		},
	}
	dial := dialer.DialContext
	if o.Dial != nil {
		dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			if err := f.guard(network, address); err != nil {
				return nil, &net.OpError{Op: "dial", Net: network, Err: err}
			}
			return o.Dial(ctx, network, address)
		}
	}
	transport := &http.Transport{
		// Never through an environment proxy: the guard would see only the
		// proxy's address.
		Proxy:                  nil,
		DialContext:            dial,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    o.ConnectTimeout,
		ResponseHeaderTimeout:  o.HeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	f.client = &http.Client{
		Transport:     transport,
		CheckRedirect: f.checkRedirect,
	}
	return f
}

// Close releases idle connections.
func (f *Fetcher) Close() { f.client.CloseIdleConnections() }

// Options returns the options in effect (with defaults filled in).
func (f *Fetcher) Options() Options { return f.opts }

type redirectsKey struct{}

// redirectLog records the redirects of one request.
type redirectLog struct {
	// permanentURL is where the leading run of permanent redirects
	// (301/308) led, "" when the first hop was not permanent.
	permanentURL string
	broken       bool
}

func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if f.opts.MaxRedirects < 0 || len(via) > f.opts.MaxRedirects {
		return fmt.Errorf("stopped after %d redirects (at most %d are followed)", len(via), max(f.opts.MaxRedirects, 0))
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to %q refused: only http and https are followed", req.URL.Redacted())
	}
	if req.Response != nil && via[0].Method == http.MethodPost {
		// Only 307/308 keep a POST a POST; following a 301/302/303 would
		// turn a delivery or a hub request into a GET.
		if c := req.Response.StatusCode; c != http.StatusTemporaryRedirect && c != http.StatusPermanentRedirect {
			return http.ErrUseLastResponse
		}
	}
	if log, ok := req.Context().Value(redirectsKey{}).(*redirectLog); ok && req.Response != nil && !log.broken {
		switch req.Response.StatusCode {
		case http.StatusMovedPermanently, http.StatusPermanentRedirect:
			log.permanentURL = req.URL.String()
		default:
			log.broken = true
		}
	}
	// Credentials set for the first host must not travel to another.
	if req.URL.Host != via[0].URL.Host {
		req.Header.Del("Authorization")
	}
	return nil
}

// Conditional holds the validators of a conditional GET.
type Conditional struct {
	ETag         string
	LastModified string
}

// Response is a fetched answer with its body read in full (bounded by
// MaxBody; for answers other than 2xx by a smaller limit).
type Response struct {
	// URL is the URL that answered (after redirects).
	URL string
	// PermanentURL is where a leading run of permanent redirects (301, 308)
	// led: the URL to use from now on. Empty when there was none.
	PermanentURL string
	StatusCode   int
	// Status is the status line's text, e.g. "200 OK".
	Status string
	Header http.Header
	Body   []byte
	// Duration is how long the exchange took.
	Duration time.Duration
}

// ContentType returns the answer's media type, lower case, without
// parameters.
func (r *Response) ContentType() string {
	ct := r.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// RetryAfter returns the delay the answer's Retry-After header asks for.
func (r *Response) RetryAfter(now time.Time) (time.Duration, bool) {
	return ParseRetryAfter(r.Header.Get("Retry-After"), now)
}

// ParseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
// It reports false for an absent or malformed value; a date in the past is a
// zero delay.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		const maxSeconds = int64(1<<62) / int64(time.Second)
		return time.Duration(min(n, maxSeconds)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// BodyTooLargeError reports a body over the fetcher's MaxBody.
type BodyTooLargeError struct {
	URL   string
	Limit int64
}

func (e *BodyTooLargeError) Error() string {
	return fmt.Sprintf("the body of %s is larger than %s (after decompression); feedgate does not read bigger documents", e.URL, SizeString(e.Limit))
}

// SizeString renders a byte count for messages ("10 MiB").
func SizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Get fetches rawurl, conditionally when cond has validators.
func (f *Fetcher) Get(ctx context.Context, rawurl string, cond Conditional) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawurl, nil)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %w", rawurl, err)
	}
	req.Header.Set("Accept", "application/atom+xml, application/rss+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, text/html;q=0.7, */*;q=0.5")
	if cond.ETag != "" {
		req.Header.Set("If-None-Match", cond.ETag)
	}
	if cond.LastModified != "" {
		req.Header.Set("If-Modified-Since", cond.LastModified)
	}
	return f.Do(req)
}

// Post sends body to rawurl with the content type and extra headers. It
// follows 307 and 308 redirects (repeating the POST) and no others.
func (f *Fetcher) Post(ctx context.Context, rawurl, contentType string, body []byte, header http.Header) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawurl, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %w", rawurl, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return f.Do(req)
}

// PostForm posts url-encoded form values, as WebSub hub requests are.
func (f *Fetcher) PostForm(ctx context.Context, rawurl string, form url.Values) (*Response, error) {
	return f.Post(ctx, rawurl, "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
}

// Do sends req through the guarded client and reads the answer's body
// (bounded). The request's context bounds the exchange together with the
// fetcher's Timeout. A non-2xx answer is not an error; a refused address,
// a network failure, too many redirects or a body over MaxBody are.
func (f *Fetcher) Do(req *http.Request) (*Response, error) {
	if req.URL == nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") {
		return nil, fmt.Errorf("only http and https URLs are fetched, not %q", req.URL.Redacted())
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(req.Context(), f.opts.Timeout)
	defer cancel()
	rlog := &redirectLog{}
	ctx = context.WithValue(ctx, redirectsKey{}, rlog)
	req = req.WithContext(ctx)
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", f.opts.UserAgent)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, f.explain(ctx, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	limit := f.opts.MaxBody
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		limit = min(limit, errorBodyLimit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if resp.Uncompressed && ctx.Err() == nil {
			return nil, fmt.Errorf("reading %s: the body is corrupt gzip (%v)", resp.Request.URL.Redacted(), err)
		}
		return nil, f.explain(ctx, resp.Request.URL.Redacted(), err)
	}
	if int64(len(body)) > limit {
		if limit < f.opts.MaxBody {
			body = body[:limit] // an error page: keep its start
		} else {
			return nil, &BodyTooLargeError{URL: resp.Request.URL.Redacted(), Limit: limit}
		}
	}
	out := &Response{
		URL:        resp.Request.URL.String(),
		StatusCode: resp.StatusCode,
		Status:     resp.Status,
		Header:     resp.Header,
		Body:       body,
		Duration:   time.Since(start),
	}
	if rlog.permanentURL != "" {
		out.PermanentURL = rlog.permanentURL
	}
	return out, nil
}

// explain turns a client error into one that says what went wrong.
func (f *Fetcher) explain(ctx context.Context, u string, err error) error {
	var refused *RefusedError
	if errors.As(err, &refused) {
		return refused
	}
	var tooLarge *BodyTooLargeError
	if errors.As(err, &tooLarge) {
		return tooLarge
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("fetching %s timed out (limit %s): %w", u, f.opts.Timeout, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("fetching %s: %w", u, ue.Err)
	}
	return fmt.Errorf("fetching %s: %w", u, err)
}

// RefusedError reports an address the guard does not connect to.
type RefusedError struct {
	// Host is the name that resolved to Addr ("" when dialing an address).
	Host   string
	Addr   netip.Addr
	Reason string
}

func (e *RefusedError) Error() string {
	who := e.Addr.String()
	if e.Host != "" && e.Host != who {
		who = e.Host + " resolves to " + who + ","
	} else {
		who += " is"
	}
	return fmt.Sprintf("%s %s; feedgate only connects to public addresses unless started with --allow-private", who, e.Reason)
}

// guard is the dialer's check of the address it is about to connect to.
func (f *Fetcher) guard(network, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refusing to dial %s %q: not an IP address and port", network, address)
	}
	return f.checkAddr("", ap)
}

func (f *Fetcher) checkAddr(host string, ap netip.AddrPort) error {
	if f.opts.AllowPrivate {
		return nil
	}
	addr := ap.Addr().Unmap()
	for _, a := range f.opts.AllowAddrs {
		if a.Addr().Unmap() == addr && (a.Port() == 0 || a.Port() == ap.Port()) {
			return nil
		}
	}
	if reason := refusedReason(addr); reason != "" {
		return &RefusedError{Host: host, Addr: addr, Reason: reason}
	}
	return nil
}

var (
	cgnat        = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork  = netip.MustParsePrefix("0.0.0.0/8")
	ietfProtocol = netip.MustParsePrefix("192.0.0.0/24")
	benchmarking = netip.MustParsePrefix("198.18.0.0/15")
	reserved4    = netip.MustParsePrefix("240.0.0.0/4")
	siteLocal6   = netip.MustParsePrefix("fec0::/10")
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour    = netip.MustParsePrefix("2002::/16")
)

// refusedReason says why addr is not a public address, or "" when it is.
func refusedReason(addr netip.Addr) string {
	addr = addr.Unmap()
	switch {
	case !addr.IsValid():
		return "not a valid address"
	case addr.IsLoopback():
		return "a loopback address"
	case addr.IsUnspecified():
		return "an unspecified address"
	case addr.IsLinkLocalUnicast():
		return "a link-local address (such as a cloud metadata service)"
	case addr.IsMulticast():
		return "a multicast address"
	case addr.IsPrivate():
		return "a private address"
	case cgnat.Contains(addr):
		return "a shared (carrier-grade NAT) address"
	case thisNetwork.Contains(addr), ietfProtocol.Contains(addr), benchmarking.Contains(addr), reserved4.Contains(addr):
		return "a reserved address"
	case siteLocal6.Contains(addr):
		return "a site-local address"
	case nat64.Contains(addr):
		b := addr.As16()
		if r := refusedReason(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
			return r + " behind NAT64"
		}
	case sixToFour.Contains(addr):
		b := addr.As16()
		if r := refusedReason(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
			return r + " behind 6to4"
		}
	}
	return ""
}

// CheckURL validates a topic or callback URL at subscribe time: an absolute
// http(s) URL whose host, once resolved, is an address the fetcher may
// connect to. A *RefusedError says which address was refused and why (the
// caller answers 422 with it). A host that does not resolve is not an error:
// the failure shows in the topic's status when it is fetched.
func (f *Fetcher) CheckURL(ctx context.Context, rawurl string) error {
	u, err := url.Parse(rawurl)
	if err != nil {
		return fmt.Errorf("%q is not a valid URL: %w", rawurl, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q is not an http or https URL", rawurl)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%q has no host", rawurl)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("%q has an invalid port %q", rawurl, port)
	}
	if f.opts.AllowPrivate {
		return nil
	}
	if addr, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return f.checkAddr("", netip.AddrPortFrom(addr, uint16(p)))
	}
	r := f.opts.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	lctx, cancel := context.WithTimeout(ctx, f.opts.ConnectTimeout)
	defer cancel()
	addrs, err := r.LookupNetIP(lctx, "ip", host)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Not resolving now is not a reason to refuse: DNS may be down or
		// the name may appear later; the status will tell.
		return nil
	}
	for _, a := range addrs {
		if err := f.checkAddr(host, netip.AddrPortFrom(a, uint16(p))); err != nil {
			return err
		}
	}
	return nil
}
