package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestParseRights(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []store.Right
		err  bool
	}{
		{in: "retrieve", want: []store.Right{store.RightRetrieve}},
		{in: " Subscribe , list,subscribe", want: []store.Right{store.RightSubscribe, store.RightList}},
		{in: "all", want: store.AllRights},
		{in: "retrieve,,publish", want: []store.Right{store.RightRetrieve, store.RightPublish}},
		{in: "", err: true},
		{in: " , ", err: true},
		{in: "read", err: true},
		{in: "retrieve,root", err: true},
	} {
		got, err := auth.ParseRights(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseRights(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && !slices.Equal(got, tc.want) {
			t.Errorf("ParseRights(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseScopes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "", want: nil},
		{in: "http://a.example/feed", want: []string{"http://a.example/feed"}},
		{in: "https://a.example/*, http://b.example/x", want: []string{"https://a.example/*", "http://b.example/x"}},
		{in: "ftp://a.example/", err: true},
		{in: "a.example/feed", err: true},
		{in: "http:///nohost", err: true},
		{in: "*", err: true},
	} {
		got, err := auth.ParseScopes(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseScopes(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && !slices.Equal(got, tc.want) {
			t.Errorf("ParseScopes(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestPrincipalRightsAndScopes(t *testing.T) {
	t.Parallel()
	reader := auth.NewPrincipal("r", []store.Right{store.RightRetrieve}, []string{"http://a.example/scoped*", "http://b.example/exact"})
	admin := auth.NewPrincipal("a", []store.Right{store.RightAdmin}, nil)
	for _, tc := range []struct {
		name  string
		p     *auth.Principal
		right store.Right
		can   bool
	}{
		{"reader retrieves", reader, store.RightRetrieve, true},
		{"reader cannot publish", reader, store.RightPublish, false},
		{"admin carries every right", admin, store.RightPublish, true},
	} {
		if got := tc.p.Can(tc.right); got != tc.can {
			t.Errorf("%s: Can(%s) = %v", tc.name, tc.right, got)
		}
		err := auth.Require(tc.p, tc.right)
		if tc.can != (err == nil) {
			t.Errorf("%s: Require(%s) = %v", tc.name, tc.right, err)
		}
		if e, ok := api.AsError(err); err != nil && (!ok || e.Code != http.StatusForbidden) {
			t.Errorf("%s: Require error %v is not a 403", tc.name, err)
		}
	}
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"http://a.example/scoped", true},
		{"http://a.example/scoped/feed.xml", true},
		{"http://a.example/scope", false},
		{"http://b.example/exact", true},
		{"http://b.example/exact/more", false},
		{"http://c.example/", false},
	} {
		if got := reader.Allows(tc.topic); got != tc.ok {
			t.Errorf("Allows(%s) = %v, want %v", tc.topic, got, tc.ok)
		}
		err := auth.RequireTopic(reader, tc.topic)
		if e, isAPI := api.AsError(err); (err == nil) != tc.ok || (err != nil && (!isAPI || e.Code != http.StatusForbidden)) {
			t.Errorf("RequireTopic(%s) = %v", tc.topic, err)
		}
		if !admin.Allows(tc.topic) {
			t.Errorf("an unscoped token must allow %s", tc.topic)
		}
	}
	if err := auth.Require(nil, store.RightRetrieve); err == nil {
		t.Error("Require(nil) must refuse")
	}
}

func TestParseExpiry(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{in: "", want: time.Time{}},
		{in: "720h", want: now.Add(720 * time.Hour)},
		{in: "90m", want: now.Add(90 * time.Minute)},
		{in: "2027-01-31", want: time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)},
		{in: "2027-01-31T12:30:00+02:00", want: time.Date(2027, 1, 31, 10, 30, 0, 0, time.UTC)},
		{in: "-1h", err: true},
		{in: "0s", err: true},
		{in: "tomorrow", err: true},
		{in: "31/01/2027", err: true},
	} {
		got, err := auth.ParseExpiry(tc.in, now)
		if (err != nil) != tc.err {
			t.Errorf("ParseExpiry(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && !got.Equal(tc.want) {
			t.Errorf("ParseExpiry(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func basic(login, token string) string {
	return base64.StdEncoding.EncodeToString([]byte(login + ":" + token))
}

func TestAuthenticateCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "alice", Rights: []store.Right{store.RightRetrieve}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(st, auth.Options{CacheTTL: time.Second, JWT: auth.JWTOptions{Secret: []byte(testSecret)}})
	if err != nil {
		t.Fatal(err)
	}
	jwtToken := mintHS(t, auth.Claims{}, "alice-app", time.Hour)
	for _, tc := range []struct {
		name   string
		header string
		query  string
		form   url.Values
		login  string
		kind   error
	}{
		{name: "basic header", header: "Basic " + basic("alice", token), login: "alice"},
		{name: "basic header, lower-case scheme", header: "basic " + basic("alice", token), login: "alice"},
		{name: "authorization= std base64", query: "authorization=" + url.QueryEscape(basic("alice", token)), login: "alice"},
		{name: "authorization= with Basic prefix", query: "authorization=" + url.QueryEscape("Basic "+basic("alice", token)), login: "alice"},
		{name: "authorization= url base64", query: "authorization=" + base64.RawURLEncoding.EncodeToString([]byte("alice:"+token)), login: "alice"},
		{name: "authorization= in form values", form: url.Values{"authorization": {basic("alice", token)}}, login: "alice"},
		{name: "bearer JWT", header: "Bearer " + jwtToken, login: "alice-app"},
		{name: "access_token= query", query: "access_token=" + jwtToken, login: "alice-app"},
		{name: "access_token= in form values", form: url.Values{"access_token": {jwtToken}}, login: "alice-app"},
		{name: "none", kind: auth.ErrNoCredentials},
		{name: "wrong token", header: "Basic " + basic("alice", "x"+token), kind: auth.ErrWrongCredentials},
		{name: "unknown login", header: "Basic " + basic("bob", token), kind: auth.ErrWrongCredentials},
		{name: "not base64", query: "authorization=!!!!", kind: auth.ErrWrongCredentials},
		{name: "no colon", header: "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), kind: auth.ErrWrongCredentials},
		{name: "unknown scheme", header: "Digest x", kind: auth.ErrWrongCredentials},
		{name: "bearer garbage", header: "Bearer not.a.jwt", kind: auth.ErrWrongCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/?"+tc.query, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			var values url.Values
			if tc.form != nil {
				values = tc.form
			}
			p, err := a.Authenticate(ctx, r, values)
			if tc.kind != nil {
				if !errors.Is(err, tc.kind) {
					t.Fatalf("error = %v, want kind %v", err, tc.kind)
				}
				e, ok := api.AsError(err)
				if !ok || e.Code != http.StatusUnauthorized || e.Header.Get("WWW-Authenticate") == "" {
					t.Fatalf("error %v is not a 401 with WWW-Authenticate", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if p.Login != tc.login {
				t.Fatalf("login = %q, want %q", p.Login, tc.login)
			}
		})
	}
}

func TestJWTNotEnabled(t *testing.T) {
	t.Parallel()
	a := auth.NewAuthenticator(openStore(t), time.Second)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+mintHS(t, auth.Claims{}, "x", time.Hour))
	_, err := a.Authenticate(context.Background(), r, nil)
	if !errors.Is(err, auth.ErrWrongCredentials) || !strings.Contains(err.Error(), "not enabled") {
		t.Fatalf("a JWT on a gateway without --jwt-secret: %v", err)
	}
}

func TestCheckExpiredToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "old", Rights: store.AllRights})
	if err != nil {
		t.Fatal(err)
	}
	// Age the stored token: AddUser refuses an expiry already past.
	u, _ := st.User(ctx, "old")
	u.Tokens[0].ExpiresAt = time.Now().Add(-time.Minute)
	if err := st.PutUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	a := auth.NewAuthenticator(st, 0)
	if _, err := a.Check(ctx, "old", token); !errors.Is(err, auth.ErrExpired) {
		t.Fatalf("an expired token: %v, want ErrExpired", err)
	}
	if _, err := auth.AddUser(ctx, st, auth.NewUser{Login: "past", Rights: store.AllRights, Expires: time.Now().Add(-time.Second)}); err == nil {
		t.Fatal("AddUser accepted an expiry in the past")
	}
}

func TestNewRefusesLongCache(t *testing.T) {
	t.Parallel()
	if _, err := auth.New(openStore(t), auth.Options{CacheTTL: 10 * time.Second}); err == nil {
		t.Fatal("a 10s credential cache would let removed tokens work past the revocation delay")
	}
	if _, err := auth.New(openStore(t), auth.Options{JWT: auth.JWTOptions{Secret: []byte("short")}}); err == nil {
		t.Fatal("a 5-byte JWT secret was accepted")
	}
}
