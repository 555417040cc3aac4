package megaplan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"callgate/crm/outbox"
)

// session holds the API token: fetched with the password grant, renewed
// with the refresh token before 90% of its life is gone, and dropped when
// the API answers 401.
type session struct {
	mu      sync.Mutex
	access  string
	refresh string
	renewAt time.Time
}

// envelope is Megaplan's answer: meta with errors, then data.
type envelope struct {
	Meta struct {
		Status int `json:"status"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	} `json:"meta"`
	Data json.RawMessage `json:"data"`
}

// errNotFound is a 404: an entity (a call by providerId) does not exist.
var errNotFound = errors.New("not found")

// errForbidden is a 403: the API user (whose token callgate holds) has no
// right to do this, which no retry changes.
var errForbidden = errors.New("access denied")

// bearer returns a valid access token, getting or renewing one if needed.
func (c *Connector) bearer(ctx context.Context) (string, error) {
	s := &c.session
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.access != "" && time.Now().Before(s.renewAt) {
		return s.access, nil
	}
	if s.refresh != "" {
		err := c.grant(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.refresh}})
		if err == nil {
			return s.access, nil
		}
		s.refresh = ""
	}
	if err := c.grant(ctx, url.Values{"grant_type": {"password"}, "username": {c.cfg.Username}, "password": {c.cfg.Password}}); err != nil {
		return "", err
	}
	return s.access, nil
}

// grant asks auth/access_token for a token (s.mu held).
func (c *Connector) grant(ctx context.Context, form url.Values) error {
	if err := c.limit.Wait(ctx); err != nil {
		return &outbox.Temporary{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/api/v3/auth/access_token", strings.NewReader(form.Encode()))
	if err != nil {
		return &outbox.Permanent{Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := c.http.Do(req)
	if err != nil {
		c.count("error")
		return &outbox.Temporary{Err: fmt.Errorf("megaplan auth: %w", errors.Unwrap(err))}
	}
	defer res.Body.Close()
	c.count(strconv.Itoa(res.StatusCode))
	var body struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
		Error        string `json:"error"`
		Description  string `json:"error_description"`
	}
	_ = json.NewDecoder(io.LimitReader(res.Body, 1<<16)).Decode(&body)
	if res.StatusCode != http.StatusOK || body.AccessToken == "" {
		// Wrong credentials are fixed in the configuration: keep the items
		// and try again later rather than dropping them.
		return &outbox.Temporary{Err: fmt.Errorf("megaplan auth (%s): %d %s %s", form.Get("grant_type"), res.StatusCode, body.Error, body.Description),
			After: outbox.RetryAfter(res.Header.Get("Retry-After"))}
	}
	life := time.Duration(body.ExpiresIn) * time.Second
	if life <= 0 {
		life = 48 * time.Hour
	}
	c.session.access, c.session.refresh = body.AccessToken, body.RefreshToken
	c.session.renewAt = time.Now().Add(life * 9 / 10)
	return nil
}

// do sends one API request within the rate limit with a valid token,
// renewing it once on 401, and classifies the answer for the outbox. For
// GET, params become the URL-encoded JSON query; for POST, the JSON body.
func (c *Connector) do(ctx context.Context, method, path string, params any, out any) error {
	for attempt := 0; ; attempt++ {
		tok, err := c.bearer(ctx)
		if err != nil {
			return err
		}
		if err := c.limit.Wait(ctx); err != nil {
			return &outbox.Temporary{Err: err}
		}
		u := c.base + "/api/v3/" + path
		var body io.Reader
		if params != nil {
			b, err := json.Marshal(params)
			if err != nil {
				return &outbox.Permanent{Err: err}
			}
			if method == http.MethodGet {
				u += "?" + url.QueryEscape(string(b))
			} else {
				body = bytes.NewReader(b)
			}
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return &outbox.Permanent{Err: err}
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := c.http.Do(req)
		if err != nil {
			c.count("error")
			return &outbox.Temporary{Err: fmt.Errorf("megaplan %s: %w", path, errors.Unwrap(err))}
		}
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 4<<20))
		res.Body.Close()
		c.count(strconv.Itoa(res.StatusCode))
		var env envelope
		_ = json.Unmarshal(raw, &env)
		var msgs []string
		for _, e := range env.Meta.Errors {
			msgs = append(msgs, e.Message)
		}
		why := fmt.Errorf("megaplan %s %s: %d %s", method, path, res.StatusCode, strings.Join(msgs, "; "))
		switch {
		case res.StatusCode == http.StatusOK:
			if out != nil && len(env.Data) > 0 {
				if err := json.Unmarshal(env.Data, out); err != nil {
					return &outbox.Temporary{Err: fmt.Errorf("megaplan %s: answer: %w", path, err)}
				}
			}
			return nil
		case res.StatusCode == http.StatusUnauthorized && attempt == 0:
			c.session.mu.Lock()
			if c.session.access == tok {
				c.session.access = "" // expired early or revoked: renew
			}
			c.session.mu.Unlock()
			continue
		case res.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: %w", errNotFound, why)
		case res.StatusCode == http.StatusForbidden:
			return &outbox.Permanent{Err: fmt.Errorf("%w: %w", errForbidden, why)}
		case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500 || res.StatusCode == http.StatusUnauthorized:
			return &outbox.Temporary{Err: why, After: outbox.RetryAfter(res.Header.Get("Retry-After"))}
		default:
			// 422 validation, 403 no rights: retrying cannot help.
			return &outbox.Permanent{Err: why}
		}
	}
}

func (c *Connector) count(code string) {
	if c.cfg.OnRequest != nil {
		c.cfg.OnRequest(code)
	}
}
