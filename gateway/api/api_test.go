package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestProbesAndMetricsAuth(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "callgate_test_total", Help: "t"}))
	ready := errors.New("upstream sales1: backoff")
	s := &Server{Tokens: NewTokens([]string{"token-for-tests"}), Gatherer: reg,
		Ready: []Check{{Name: "store", Fn: func() error { return nil }}, {Name: "upstream", Fn: func() error { return ready }}}}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path, token string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		buf := make([]byte, 64<<10)
		n, _ := res.Body.Read(buf)
		b.Write(buf[:n])
		return res, b.String()
	}
	if res, body := get("/healthz", ""); res.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", res.StatusCode, body)
	}
	res, body := get("/readyz", "")
	if res.StatusCode != 503 || strings.Contains(body, "sales1") {
		t.Fatalf("readyz leaks details or is ready: %d %s", res.StatusCode, body)
	}
	_, body = get("/readyz", "token-for-tests")
	var rb struct {
		Ready  bool
		Failed map[string]string
	}
	json.Unmarshal([]byte(body), &rb)
	if rb.Ready || rb.Failed["upstream"] == "" || rb.Failed["store"] != "" {
		t.Fatalf("readyz detail %s", body)
	}
	ready = nil
	if res, _ := get("/readyz", ""); res.StatusCode != 200 {
		t.Fatal("not ready when all checks pass")
	}
	if res, body := get("/metrics", ""); res.StatusCode != 401 || !strings.Contains(body, `"code":"unauthorized"`) {
		t.Fatalf("metrics without token: %d %s", res.StatusCode, body)
	}
	if res, _ := get("/metrics", "wrong-token-123"); res.StatusCode != 401 {
		t.Fatal("wrong token accepted")
	}
	if res, body := get("/metrics", "token-for-tests"); res.StatusCode != 200 || !strings.Contains(body, "callgate_test_total") {
		t.Fatalf("metrics: %d", res.StatusCode)
	}
	if res, _ := get("/debug/pprof/", ""); res.StatusCode != 401 {
		t.Fatal("profiles served without a token")
	}
	if res, _ := get("/debug/pprof/", "token-for-tests"); res.StatusCode != 200 {
		t.Fatal("profiles not served with a token")
	}
	if res, body := get("/nope", ""); res.StatusCode != 404 || !strings.Contains(body, `"code":"not_found"`) {
		t.Fatalf("404 shape: %s", body)
	}
}
