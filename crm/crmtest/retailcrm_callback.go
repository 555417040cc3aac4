package crmtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// What RetailCRM's servers send to the telephony side: a manager's click
// on a number calls the module's makeCallUrl, and a call's recordUrl is
// fetched to play it. Client is how the stand-in reaches callgate (its
// public_url, possibly through a TLS proxy); nil is http.DefaultClient.

// MakeCall calls the makeCallUrl of the module registered under code, as
// RetailCRM does when user userID (extension ext) clicks phone: with the
// module's clientId and the shop line externalPhone (may be empty). It
// returns the answer's status and JSON body.
func (r *RetailCRM) MakeCall(client *http.Client, code string, userID int, ext, phone, externalPhone string) (int, map[string]any, error) {
	raw, _ := r.Module(code)
	if raw == nil {
		return 0, nil, fmt.Errorf("no module %q registered", code)
	}
	var m struct {
		ClientID     string `json:"clientId"`
		Integrations struct {
			Telephony struct {
				MakeCallURL string `json:"makeCallUrl"`
			} `json:"telephony"`
		} `json:"integrations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return 0, nil, fmt.Errorf("module %q: %w", code, err)
	}
	q := url.Values{"clientId": {m.ClientID}, "code": {ext}, "phone": {phone}, "userId": {strconv.Itoa(userID)}}
	if externalPhone != "" {
		q.Set("externalPhone", externalPhone)
	}
	res, err := orDefault(client).Get(m.Integrations.Telephony.MakeCallURL + "?" + q.Encode())
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&body); err != nil {
		return res.StatusCode, nil, fmt.Errorf("makeCallUrl answered %d without JSON: %w", res.StatusCode, err)
	}
	return res.StatusCode, body, nil
}

// ErrNoRecordURL is Recording's error for a call uploaded without one.
var ErrNoRecordURL = errors.New("the call has no recordUrl")

// Recording fetches the recordUrl of the call uploaded with externalID, as
// RetailCRM does to play it, and returns the audio. Anything but a 200
// with a WAV file is an error.
func (r *RetailCRM) Recording(client *http.Client, externalID string) ([]byte, error) {
	var link string
	for _, c := range r.Calls() {
		if c.ExternalID == externalID {
			link = c.RecordURL
		}
	}
	if link == "" {
		return nil, ErrNoRecordURL
	}
	res, err := orDefault(client).Get(link)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "audio/wav" || !bytes.HasPrefix(b, []byte("RIFF")) {
		return nil, fmt.Errorf("recordUrl %s: %d %q", link, res.StatusCode, res.Header.Get("Content-Type"))
	}
	return b, nil
}

func orDefault(c *http.Client) *http.Client {
	if c == nil {
		return http.DefaultClient
	}
	return c
}
