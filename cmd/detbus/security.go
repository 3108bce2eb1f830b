package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/detbus/detbus/transport"
)

// securityFlags are serve's flags for who may connect and how.
type securityFlags struct {
	authFile  string
	tlsCert   string
	tlsKey    string
	tlsCA     string
	tlsVerify bool
}

func (s *securityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.authFile, "auth", "", `JSON file of users allowed to connect: {"users":[{"name":"orders-svc","password":"...","sources":["orders.>"]}]} (none: any client may connect)`)
	fs.StringVar(&s.tlsCert, "tls-cert", "", "server certificate (PEM): clients must connect with TLS")
	fs.StringVar(&s.tlsKey, "tls-key", "", "the server certificate's key (PEM)")
	fs.StringVar(&s.tlsCA, "tls-ca", "", "CA certificate (PEM) of the server's and clients' certificates")
	fs.BoolVar(&s.tlsVerify, "tls-verify", false, "require client certificates signed by --tls-ca")
}

// apply puts the users and TLS files into cfg; the permissions are for the
// log named by lc.
func (s *securityFlags) apply(cfg *transport.ServerConfig, lc transport.Config) error {
	if s.authFile != "" {
		auth, err := readAuthFile(s.authFile)
		if err != nil {
			return err
		}
		auth.Stream, auth.Prefix = lc.Stream, lc.Prefix
		cfg.Auth = auth
	}
	if s.tlsCert != "" || s.tlsKey != "" || s.tlsCA != "" || s.tlsVerify {
		if s.tlsCert == "" || s.tlsKey == "" {
			return usagef("--tls-cert and --tls-key go together")
		}
		if s.tlsVerify && s.tlsCA == "" {
			return usagef("--tls-verify needs --tls-ca")
		}
		cfg.TLS = &transport.TLSConfig{CertFile: s.tlsCert, KeyFile: s.tlsKey, CAFile: s.tlsCA, VerifyClients: s.tlsVerify}
	}
	return nil
}

// readAuthFile reads an [transport.AuthConfig] as JSON, refusing unknown
// fields so that a misspelt one is not silently ignored.
func readAuthFile(path string) (transport.AuthConfig, error) {
	var a transport.AuthConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return a, usagef("--auth: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, usagef("--auth %s: not a users file: %v", path, err)
	}
	if len(a.Users) == 0 {
		return a, usagef("--auth %s lists no users", path)
	}
	if err := a.Validate(); err != nil {
		return a, usagef("--auth %s: %v", path, err)
	}
	return a, nil
}

func describeAuth(cfg transport.ServerConfig) string {
	s := "none: any client may connect and write any ESK (--auth FILE to require users)"
	if n := len(cfg.Auth.Users); n > 0 {
		s = fmt.Sprintf("%d users; each source writes only its own ESKs", n)
	}
	if cfg.TLS != nil {
		s += "; TLS required"
	}
	return s
}
