package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ratatouille/rat/examples/secret-release/release"
)

// clientConfig is `secret-release -client`: a device-side walk through the
// relying-party flow for demos against a service in -device-header-unsafe
// mode. A real device gets its token over MQTT from the hub; this client
// asks POST /v1/tokens with an operator or relying-party credential.
type clientConfig struct {
	Service, Hub, Device, Audience string
	CredentialFile                 string // bearer credential for the hub's POST /v1/tokens
	TokenOut                       string // get nonce and token, save the token here, stop
	TokenIn                        string // present the token saved here
}

// Exit codes of -client.
const (
	exitReleased = 0
	exitError    = 1
	exitRefused  = 3
)

var httpClient = &http.Client{Timeout: 10 * time.Second}

func runClient(w io.Writer, c clientConfig) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "secret-release -client:", err)
		return exitError
	}
	if c.Service == "" || c.Device == "" {
		return fail(errors.New("-service and -device are required"))
	}
	var token string
	if c.TokenIn != "" {
		b, err := os.ReadFile(c.TokenIn)
		if err != nil {
			return fail(err)
		}
		token = strings.TrimSpace(string(b))
	} else {
		if c.Hub == "" || c.CredentialFile == "" {
			return fail(errors.New("-hub and -hub-credential-file are required to get a token"))
		}
		cred, err := os.ReadFile(c.CredentialFile)
		if err != nil {
			return fail(err)
		}
		var n struct{ Nonce string }
		if err := call(http.MethodPost, c.Service+"/v1/nonce", c.Device, "", nil, &n); err != nil {
			return fail(fmt.Errorf("nonce from the service: %w", err))
		}
		body, _ := json.Marshal(map[string]string{"device_id": c.Device, "nonce": n.Nonce, "audience": c.Audience})
		var tr struct {
			Token, ID string
			Status    string   `json:"ear_status"`
			Reasons   []string `json:"reasons"`
		}
		if err := call(http.MethodPost, c.Hub+"/v1/tokens", "", strings.TrimSpace(string(cred)), body, &tr); err != nil {
			return fail(fmt.Errorf("token from the hub: %w", err))
		}
		fmt.Fprintf(w, "token %s for %s: ear.status=%s", tr.ID, c.Device, tr.Status)
		if len(tr.Reasons) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(tr.Reasons, "; "))
		}
		fmt.Fprintln(w)
		token = tr.Token
		if c.TokenOut != "" {
			if err := os.WriteFile(c.TokenOut, []byte(token+"\n"), 0o600); err != nil {
				return fail(err)
			}
			return exitReleased
		}
	}
	var out struct{ Secret, Error string }
	code, err := callStatus(http.MethodGet, c.Service+"/v1/secret", c.Device, token, nil, &out, &out)
	if err != nil {
		return fail(err)
	}
	if code == http.StatusOK {
		fmt.Fprintf(w, "secret released to %s: %q\n", c.Device, out.Secret)
		return exitReleased
	}
	fmt.Fprintf(w, "secret refused to %s: %s\n", c.Device, out.Error)
	return exitRefused
}

// call does one JSON request and wants 200.
func call(method, url, device, bearer string, body []byte, out any) error {
	var e struct{ Error string }
	code, err := callStatus(method, url, device, bearer, body, out, &e)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%s %s: HTTP %d: %s", method, url, code, e.Error)
	}
	return err
}

// callStatus does one request; a 200 body decodes into out, any other into errOut.
func callStatus(method, url, device, bearer string, body []byte, out, errOut any) (int, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if device != "" {
		req.Header.Set(release.DeviceHeaderUnsafe, device)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		_ = json.Unmarshal(b, errOut) // best effort: the status code is the answer
		return resp.StatusCode, nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, url, err)
	}
	return resp.StatusCode, nil
}
