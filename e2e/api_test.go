package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// An inbound call reaches ivanov's live stream (not petrov's) as ringing,
// answered and ended; its recording is then fetched through a signed link
// without a token, whole and by range, and the key signing links survives
// a restart.
func TestLiveEventsAndSignedRecordingLinks(t *testing.T) {
	o := newOffice(t, officeOpts{Extra: employeeTokens})
	iv := o.d.events(t, ivanovToken, "")
	pe := o.d.events(t, petrovToken, "")
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 20*time.Second)

	vpbxSide, _, in := o.inbound(ctx, outside.Addr().String(), employee.Addr().String())
	ring := nextEvent(t, iv)
	if ring.Kind != "ringing" || ring.Data.Caller != "79161234567" || ring.Data.Outside != "+79161234567" || len(ring.Data.Employees) != 1 || ring.Data.Employees[0] != "ivanov" {
		t.Fatalf("ringing event %+v", ring)
	}
	if ans := nextEvent(t, iv); ans.Kind != "answered" || ans.Data.AnsweredBy != "ivanov" || ans.Data.CallID != ring.Data.CallID {
		t.Fatalf("answered event %+v", ans)
	}
	toA, _ := siptest.MediaAddr(vpbxSide.Remote)
	toB, _ := siptest.MediaAddr(in.Request.Body())
	outside.SendTo(toA)
	employee.SendTo(toB)
	o.d.waitFor("audio both ways", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })
	time.Sleep(500 * time.Millisecond)
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	end := nextEvent(t, iv)
	if end.Kind != "ended" || end.Data.Result != "answered" {
		t.Fatalf("ended event %+v", end)
	}
	select {
	case ev := <-pe:
		t.Fatalf("petrov saw ivanov's call: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
	// Resuming after the ringing event replays answered and ended once.
	re := o.d.events(t, ivanovToken, ring.ID)
	if a, b := nextEvent(t, re), nextEvent(t, re); a.Kind != "answered" || b.Kind != "ended" {
		t.Fatalf("resume: %+v %+v", a, b)
	}

	rec := o.lastCall()
	leg := rec.ID + "-1"
	wav, err := os.ReadFile(filepath.Join(o.recDir, rec.Legs[0].Recording))
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := o.d.do(t, "POST", "/api/v1/recordings/"+leg+"/link", petrovToken); res.StatusCode != 403 {
		t.Fatalf("petrov minted a link to ivanov's call: %d", res.StatusCode)
	}
	res, b := o.d.do(t, "POST", "/api/v1/recordings/"+leg+"/link", ivanovToken)
	var link struct{ URL string }
	if json.Unmarshal(b, &link) != nil || res.StatusCode != 200 || !strings.Contains(link.URL, "sig=") {
		t.Fatalf("mint: %d %s", res.StatusCode, b)
	}
	res, b = o.d.do(t, "GET", link.URL, "")
	if res.StatusCode != 200 || !bytes.Equal(b, wav) || res.Header.Get("Content-Type") != "audio/wav" {
		t.Fatalf("signed fetch: %d, %d of %d bytes", res.StatusCode, len(b), len(wav))
	}
	// The fetched file is the call: 440 Hz on the left, 1000 Hz on the right.
	got := filepath.Join(t.TempDir(), "fetched.wav")
	_ = os.WriteFile(got, b, 0o644)
	left, right, err := record.Channels(got)
	if err != nil || len(left) < 4000 {
		t.Fatalf("fetched WAV: %v", err)
	}
	mid := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
	if !rtptest.Has(mid(left), 440) || !rtptest.Has(mid(right), 1000) {
		t.Fatal("fetched recording does not hold the call's tones")
	}
	res, b = o.d.do(t, "GET", link.URL, "", "Range", "bytes=0-43")
	if res.StatusCode != 206 || !bytes.Equal(b, wav[:44]) {
		t.Fatalf("range: %d %d bytes", res.StatusCode, len(b))
	}
	if res, _ := o.d.do(t, "GET", strings.Replace(link.URL, "sig=", "sig=0", 1), ""); res.StatusCode != 403 {
		t.Fatalf("tampered link: %d", res.StatusCode)
	}

	// The signing key is in the store: the link still works after a restart.
	// SIGTERM also ends the open event streams, or stop would time out.
	o.d.stop()
	d2 := startDaemon(t, o.d.cfg)
	if res, b := d2.do(t, "GET", link.URL, ""); res.StatusCode != 200 || !bytes.Equal(b, wav) {
		t.Fatalf("link after restart: %d", res.StatusCode)
	}
}

// With tls_cert and tls_key the API speaks HTTPS only.
func TestAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "callgate.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)

	cfg := newDaemonConfig(t, "")
	cfg.HTTPExtra = fmt.Sprintf("tls_cert = %q\ntls_key = %q\n", certPath, keyPath)
	d := startDaemon(t, cfg)
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/api/v1/calls", cfg.HTTPPort), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil {
		t.Fatalf("https: %d", res.StatusCode)
	}
	// Plain HTTP is refused.
	if res, err := d.get("/api/v1/calls", true); err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Fatal("plain HTTP served with TLS configured")
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
