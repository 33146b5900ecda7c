package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/feedgate/feedgate/auth"
)

// SocketName is the control socket's file name inside the data directory.
const SocketName = "admin.sock"

type addRequest struct {
	Login   string    `json:"login"`
	Rights  []string  `json:"rights"`
	Topics  []string  `json:"topics"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires,omitzero"`
}

type rotateRequest struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires,omitzero"`
}

type answer struct {
	Token string     `json:"token,omitempty"`
	Users []UserInfo `json:"users,omitempty"`
	Error string     `json:"error,omitempty"`
}

// Serve answers user commands on a unix socket at path until ctx ends. The
// socket is created with mode 0600: only the gateway's own OS user may
// manage users through it.
func Serve(ctx context.Context, path string, users Users) error {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return err
	}
	srv := &http.Server{Handler: handler(users), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(path)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func handler(users Users) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, a answer, err error) {
		if err != nil {
			a = answer{Error: err.Error()}
			w.WriteHeader(http.StatusBadRequest)
		}
		json.NewEncoder(w).Encode(a)
	}
	mux.HandleFunc("POST /users", func(w http.ResponseWriter, r *http.Request) {
		var req addRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			reply(w, answer{}, err)
			return
		}
		nu, err := newUser(req)
		if err != nil {
			reply(w, answer{}, err)
			return
		}
		token, err := users.Add(r.Context(), nu)
		reply(w, answer{Token: token}, err)
	})
	mux.HandleFunc("GET /users", func(w http.ResponseWriter, r *http.Request) {
		us, err := users.List(r.Context())
		reply(w, answer{Users: us}, err)
	})
	mux.HandleFunc("DELETE /users/{login}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, answer{}, users.Remove(r.Context(), r.PathValue("login")))
	})
	mux.HandleFunc("POST /users/{login}/rotate", func(w http.ResponseWriter, r *http.Request) {
		var req rotateRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			reply(w, answer{}, err)
			return
		}
		token, err := users.Rotate(r.Context(), auth.Rotation{Login: r.PathValue("login"), Token: req.Token, Expires: req.Expires})
		reply(w, answer{Token: token}, err)
	})
	return mux
}

func newUser(req addRequest) (auth.NewUser, error) {
	nu := auth.NewUser{Login: req.Login, Topics: req.Topics, Token: req.Token, Expires: req.Expires}
	for _, r := range req.Rights {
		rs, err := auth.ParseRights(r)
		if err != nil {
			return nu, err
		}
		nu.Rights = append(nu.Rights, rs...)
	}
	return nu, nil
}

// Client sends user commands to a running gateway's control socket.
type Client struct {
	http *http.Client
}

var _ Users = (*Client)(nil)

// Dial returns a client for the socket at path.
func Dial(path string) *Client {
	return &Client{http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

func (c *Client) call(ctx context.Context, method, path string, body any) (answer, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://gateway"+path, rd)
	if err != nil {
		return answer{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("the running gateway did not answer on its admin socket: %w", err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, fmt.Errorf("bad answer from the admin socket: %w", err)
	}
	if a.Error != "" {
		return a, errors.New(a.Error)
	}
	return a, nil
}

// Add creates a user through the running gateway.
func (c *Client) Add(ctx context.Context, nu auth.NewUser) (string, error) {
	req := addRequest{Login: nu.Login, Topics: nu.Topics, Token: nu.Token, Expires: nu.Expires}
	for _, r := range nu.Rights {
		req.Rights = append(req.Rights, string(r))
	}
	a, err := c.call(ctx, http.MethodPost, "/users", req)
	return a.Token, err
}

// List returns every user.
func (c *Client) List(ctx context.Context) ([]UserInfo, error) {
	a, err := c.call(ctx, http.MethodGet, "/users", nil)
	return a.Users, err
}

// Remove deletes a user.
func (c *Client) Remove(ctx context.Context, login string) error {
	_, err := c.call(ctx, http.MethodDelete, "/users/"+url.PathEscape(login), nil)
	return err
}

// Rotate replaces a user's tokens with a new one through the running
// gateway.
func (c *Client) Rotate(ctx context.Context, r auth.Rotation) (string, error) {
	a, err := c.call(ctx, http.MethodPost, "/users/"+url.PathEscape(r.Login)+"/rotate", rotateRequest{Token: r.Token, Expires: r.Expires})
	return a.Token, err
}
