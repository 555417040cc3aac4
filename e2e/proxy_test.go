package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"

	"github.com/gobwas/ws"
)

// testCA makes a certificate authority and a server certificate it signs
// for 127.0.0.1, as an office's own CA (or Let's Encrypt) would for the
// proxy's name. It writes the server's certificate and key into dir and
// returns the pool a client trusting the CA verifies with.
func testCA(t *testing.T, dir string) (pool *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "callgate test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "callgate.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// The chain as a proxy serves it: the server's certificate, then the CA's.
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}

// proxySource is the address nginx connects to callgate from: the only
// trusted proxy in these tests, so the test's own direct requests (from
// 127.0.0.1) are not.
const proxySource = "127.0.0.2"

// nginxConf is the reverse proxy of docs/install.md in a prefix of its
// own: TLS on listen, and every path passed on to callgate by the
// documented proxy settings (the variant that offers the console too).
const nginxConf = `daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s ssl;
        ssl_certificate %[3]s;
        ssl_certificate_key %[4]s;
        location / {
%[5]s
        }
    }
}
`

// documentedProxy is the proxy settings docs/install.md gives for
// /etc/nginx/callgate-proxy.conf, sending to upstream from proxySource.
func documentedProxy(t *testing.T, upstream string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "`/etc/nginx/callgate-proxy.conf`:\n\n```nginx\n")
	block, _, closed := strings.Cut(block, "```")
	const pass = "proxy_pass http://127.0.0.1:18080;"
	if !ok || !closed || !strings.Contains(block, pass) {
		t.Fatalf("docs/install.md has no callgate-proxy.conf block with %q", pass)
	}
	return strings.Replace(block, pass, "proxy_pass http://"+upstream+";\nproxy_bind "+proxySource+";", 1)
}

// startNginx runs Debian's nginx terminating TLS on listen in front of
// callgate at upstream, as root or not: its pid file, logs and temporary
// files are in a directory of the test's (-p, -e), and it is stopped with
// the test.
func startNginx(t *testing.T, listen, upstream, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	nginx := needTool(t, "nginx")
	prefix := t.TempDir()
	conf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, prefix, listen, certFile, keyFile, documentedProxy(t, upstream)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nginx, "-t", "-p", prefix, "-c", conf, "-e", filepath.Join(prefix, "error.log")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(nginx, "-p", prefix, "-c", conf, "-e", filepath.Join(prefix, "error.log"))
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			access, _ := os.ReadFile(filepath.Join(prefix, "access.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s\naccess.log:\n%s", out.String(), tail(string(logs), 4000), tail(string(access), 4000))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", listen, &tls.Config{RootCAs: pool})
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-done:
			t.Fatalf("nginx exited: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not serve TLS on %s: %v", listen, err)
		}
	}
}

// clientFrom is an HTTP client trusting pool that connects from the
// loopback address src, so callgate's log can tell it from the proxy and
// from the test's direct requests.
func clientFrom(pool *x509.CertPool, src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// login posts a console login and returns the answer (its session cookie
// and headers).
func postLogin(t *testing.T, client *http.Client, url, password string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/api/v1/session", strings.NewReader(`{"login":"ivanov","password":"`+password+`"}`))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("login at %s: %v", url, err)
	}
	res.Body.Close()
	return res
}

func sessionCookie(res *http.Response) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == "callgate_session" {
			return c
		}
	}
	return nil
}

// A cloud CRM reaches callgate on the LAN through Debian's nginx
// terminating TLS (a test CA) in front of it: the RetailCRM stand-in's
// makeCallUrl starts a click-to-call and its recording link plays, both at
// the https public_url. callgate logs the client's address from the
// proxy's X-Forwarded-For and sets Secure cookies for the console behind
// it; a client that sends X-Forwarded-For or X-Forwarded-Proto straight
// to callgate (not from http.trusted_proxies) is not believed.
func TestCRMReachesCallgateThroughTLSProxy(t *testing.T) {
	needTool(t, "nginx")
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	public := "https://" + proxyAddr
	o := newOffice(t, officeOpts{
		HTTPExtra:   fmt.Sprintf("public_url = %q\ntrusted_proxies = [\"%s/32\"]\n", public, proxySource),
		IvanovExtra: "retailcrm_user = 7\npassword_hash = \"" + passwordHash(t) + "\"\n",
		Extra: fmt.Sprintf(`[crm.retailcrm]
enabled = true
url = %q
api_key = %q
site = "shop"
retry_max = %q
`, st.URL, retailKey, crmRetryMax)})
	pool, cert, key := testCA(t, t.TempDir())
	startNginx(t, proxyAddr, fmt.Sprintf("127.0.0.1:%d", o.d.cfg.HTTPPort), cert, key, pool)
	crm := clientFrom(pool, "127.0.0.5") // RetailCRM's servers, out on the internet
	ctx := withTimeout(t, 60*time.Second)

	o.d.waitFor("module registered", 10*time.Second, func() bool { m, _ := st.Module("callgate"); return m != nil })

	// A recorded call's link in RetailCRM's history plays through the proxy.
	outside, ivanov := tonePeers(t)
	vpbxSide, _, _ := o.talking(ctx, outside, ivanov)
	time.Sleep(1500 * time.Millisecond)
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := o.lastCall()
	o.d.waitFor("the call's history in RetailCRM", 15*time.Second, func() bool {
		for _, c := range st.Calls() {
			if c.ExternalID == rec.ID+"-1" {
				return true
			}
		}
		return false
	})
	wav, err := st.Recording(crm, rec.ID+"-1")
	if err != nil {
		t.Fatalf("playing the recording through the proxy: %v", err)
	}
	for _, c := range st.Calls() {
		if c.ExternalID == rec.ID+"-1" && !strings.HasPrefix(c.RecordURL, public+"/api/v1/recordings/") {
			t.Fatalf("recordUrl %q is not at the public_url", c.RecordURL)
		}
	}
	played := filepath.Join(t.TempDir(), "played.wav")
	_ = os.WriteFile(played, wav, 0o600)
	left, right, err := record.Channels(played)
	if err != nil || !rtptest.Has(left[len(left)/4:3*len(left)/4], 440) || !rtptest.Has(right[len(right)/4:3*len(right)/4], 1000) {
		t.Fatalf("the recording played through the proxy lacks the call's tones (%v)", err)
	}

	// makeCallUrl through the proxy: a wrong clientId is refused and
	// logged with the CRM's address; the right one rings ivanov's line and
	// dials the client.
	res, err := crm.Get(public + "/api/v1/retailcrm/make-call?clientId=guess&code=101&phone=89161234567")
	if err != nil || res.StatusCode != 403 {
		t.Fatalf("a wrong clientId through the proxy: %v %v", res, err)
	}
	res.Body.Close()
	o.d.waitFor("the refused makeCallUrl logged with the CRM's address", 5*time.Second, func() bool {
		return regexp.MustCompile(`msg="RetailCRM callback refused: wrong clientId".* client=127\.0\.0\.5`).MatchString(o.d.log.String())
	})
	code, body, err := st.MakeCall(crm, "callgate", 7, "101", "89161234567", "")
	if err != nil || code != 200 || body["callId"] == nil {
		t.Fatalf("makeCallUrl through the proxy: %d %v %v", code, body, err)
	}
	in := nextCall(t, o.phones["101"])
	if in.From() != "79161234567" {
		t.Fatalf("phone shows %q", in.From())
	}
	if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30986")); err != nil {
		t.Fatal(err)
	}
	select {
	case vc := <-o.vpbx.Calls:
		if vc.Request.Recipient.User != "79161234567" {
			t.Fatalf("VPBX was asked to dial %s", vc.Request.Recipient.User)
		}
		vc.Reject(486, "Busy Here")
	case <-ctx.Done():
		t.Fatal("makeCallUrl through the proxy dialled nobody")
	}

	// The console through the proxy: a failed login is logged with the
	// client's address (not one the client wrote into X-Forwarded-For),
	// the right one gets a Secure cookie, the answers HSTS.
	if res := postLogin(t, crm, public, "wrong-password", "X-Forwarded-For", "198.51.100.66"); res.StatusCode != 401 {
		t.Fatalf("wrong password through the proxy: %d", res.StatusCode)
	}
	o.d.waitFor("the failed login logged with the client's address", 5*time.Second, func() bool {
		return strings.Contains(o.d.log.String(), `msg="http auth failure" component=http client=127.0.0.5 reason=bad_login path=/api/v1/session login=ivanov`)
	})
	res = postLogin(t, crm, public, consolePassword)
	if c := sessionCookie(res); res.StatusCode != 200 || c == nil || !c.Secure || !c.HttpOnly || res.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("login through the proxy: %d, cookie %+v, HSTS %q", res.StatusCode, c, res.Header.Get("Strict-Transport-Security"))
	}

	// Straight to callgate, claims of a proxy's headers are not believed:
	// the failure is the peer's, the cookie is for plain HTTP.
	direct := fmt.Sprintf("http://127.0.0.1:%d", o.d.cfg.HTTPPort)
	spoof := []string{"X-Forwarded-For", "198.51.100.7", "X-Forwarded-Proto", "https"}
	if res := postLogin(t, http.DefaultClient, direct, "wrong-password", spoof...); res.StatusCode != 401 {
		t.Fatalf("wrong password straight to callgate: %d", res.StatusCode)
	}
	o.d.waitFor("the direct failure logged with the peer's address", 5*time.Second, func() bool {
		return strings.Contains(o.d.log.String(), `msg="http auth failure" component=http client=127.0.0.1 reason=bad_login`)
	})
	res = postLogin(t, http.DefaultClient, direct, consolePassword, spoof...)
	if c := sessionCookie(res); res.StatusCode != 200 || c == nil || c.Secure || res.Header.Get("Strict-Transport-Security") != "" {
		t.Fatalf("login straight to callgate claiming https: %d, cookie %+v, HSTS %q", res.StatusCode, c, res.Header.Get("Strict-Transport-Security"))
	}
	// A client changing its X-Forwarded-For with every guess is still one
	// client: it is stopped, and others through the proxy are not.
	last := 0
	for i := range 12 {
		res, _ := o.d.do(t, "GET", "/api/v1/calls", fmt.Sprintf("guessed-token-%02d", i), "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1))
		last = res.StatusCode
	}
	if last != 429 {
		t.Fatalf("12 wrong tokens under 12 made-up addresses: the last got %d, want 429", last)
	}
	req, _ := http.NewRequest("GET", public+"/api/v1/calls", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if res, err := crm.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("the right token through the proxy after another client was limited: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	logs := o.d.log.String()
	for _, claimed := range []string{"198.51.100.66", "198.51.100.7", "203.0.113."} {
		if strings.Contains(logs, "client="+claimed) {
			t.Fatalf("callgate believed a claimed address %s:\n%s", claimed, tail(logs, 4000))
		}
	}
	if strings.Contains(logs, "wrong-password") || strings.Contains(logs, consolePassword) || strings.Contains(logs, "guessed-token") {
		t.Fatal("a secret reached the log")
	}

	// The browser phone's SIP over WebSocket passes the proxy (wss://, the
	// upgrade forwarded): it registers, from the client's address.
	wsd := ws.Dialer{Protocols: []string{"sip"}, Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {public}}),
		TLSConfig: &tls.Config{RootCAs: pool}, Timeout: 5 * time.Second}
	conn, _, _, err := wsd.Dial(ctx, "wss://"+proxyAddr+"/sip")
	if err != nil {
		t.Fatalf("wss:// to /sip through the proxy: %v", err)
	}
	if code := newWSSIP(t, conn).register(t, "103", "Phone103pass", 300); code != 200 {
		t.Fatalf("register over wss:// through the proxy: %d", code)
	}
	var admin struct {
		Phones []struct{ Extension, Transport, Source string } `json:"phones"`
	}
	res, adminJSON := o.d.do(t, "GET", o.d.url("/api/v1/admin"), testToken)
	if res.StatusCode != 200 || decodeJSONBytes(adminJSON, &admin) != nil {
		t.Fatalf("admin: %d", res.StatusCode)
	}
	found := false
	for _, p := range admin.Phones {
		if p.Extension == "103" && p.Transport == "ws" {
			found = strings.HasPrefix(p.Source, "127.0.0.1:")
		}
	}
	if !found {
		t.Fatalf("no WebSocket registration of 103 from the client's address: %+v", admin.Phones)
	}
}
