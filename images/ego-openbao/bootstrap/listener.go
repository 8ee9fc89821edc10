package bootstrap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Enclave is the EGo call the bootstrap makes; egoenclave adapts github.com/edgelesssys/ego/enclave to it.
type Enclave interface {
	// CreateAzureAttestationToken quotes the enclave with SHA-256(data) as report data, has the provider at maaURL
	// verify the quote, and returns its token (x-ms-sgx-ehd = base64url(data)).
	CreateAzureAttestationToken(data []byte, maaURL string) (string, error)
}

// Logf receives progress and errors; nothing secret is ever passed to it.
type Logf func(format string, args ...any)

// Retry delays after a failed refresh: the served token stays valid for the other half of its life meanwhile.
const (
	firstRetryDelay = time.Minute
	maxRetryDelay   = 15 * time.Minute
)

// Listener owns the listener key (generated here, never written outside dir) and keeps its certificate's
// attestation fresh.
type Listener struct {
	config  Config
	enclave Enclave
	dir     string
	key     *ecdsa.PrivateKey
	binding []byte
	logf    Logf
	now     func() time.Time

	mu           sync.Mutex
	reloaders    []func() error
	refreshAfter time.Duration
}

// Identity is a listener key kept across restarts (keyrelease) and the data its attestation binds (binding version 2,
// which names the seal key the enclave unseals with).
type Identity struct {
	Key     *ecdsa.PrivateKey
	Binding []byte
}

// Start generates the listener key, binds it into an attestation token (or marks the certificate as simulated),
// and writes the key and the certificate (PEM) to dir: in the enclave ListenerDir, so KeyPath and CertificatePath.
// The token binds version 1 of the binding (Shamir unseal: there is no seal key to name).
func Start(config Config, enclave Enclave, dir string, logf Logf) (*Listener, error) {
	return start(config, enclave, dir, logf, time.Now, nil)
}

// StartWith is Start with the listener key and the binding given (attested unseal: keyrelease.Prepare's), instead of
// a new key and binding version 1.
func StartWith(config Config, enclave Enclave, dir string, logf Logf, identity Identity) (*Listener, error) {
	if identity.Key == nil {
		return nil, errors.New("a listener identity needs a key")
	}
	// Clients compare the binding's key digest with the certificate served: a binding for another key would only
	// get the listener refused, so refuse it here, where the mistake is.
	var bound struct {
		ListenerSPKISHA256 string `json:"listener_spki_sha256"`
	}
	if err := json.Unmarshal(identity.Binding, &bound); err != nil {
		return nil, fmt.Errorf("the listener binding is not JSON: %w", err)
	}
	if want, err := SPKISHA256(identity.Key.Public()); err != nil || bound.ListenerSPKISHA256 != want {
		return nil, errors.New("the listener binding does not name the listener key")
	}
	return start(config, enclave, dir, logf, time.Now, &identity)
}

func start(config Config, enclave Enclave, dir string, logf Logf, now func() time.Time, identity *Identity) (*Listener, error) {
	var key *ecdsa.PrivateKey
	var binding []byte
	if identity != nil {
		key, binding = identity.Key, identity.Binding
	} else {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("generating the listener key: %w", err)
		}
		if binding, err = BindingFor(key.Public()); err != nil {
			return nil, err
		}
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the listener key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := writeFileAtomically(filepath.Join(dir, filepath.Base(KeyPath)), keyPEM, 0o600); err != nil {
		return nil, err
	}
	listener := &Listener{config: config, enclave: enclave, dir: dir, key: key, binding: binding, logf: logf, now: now}
	if err := listener.Reissue(); err != nil {
		return nil, err
	}
	return listener, nil
}

// OnReissue registers a function that makes the server load the certificate file again (OpenBao's listener
// certificate getter: Reload). The file is already current when the server first reads it.
func (l *Listener) OnReissue(reload func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reloaders = append(l.reloaders, reload)
}

// Reissue obtains a fresh token for the same key, writes a new certificate and has the server reload it.
func (l *Listener) Reissue() error {
	now := l.now()
	token := ""
	refreshAfter := CertificateLifetime / 2
	validUntil := "no token (simulation)"
	if !l.config.Simulation {
		var err error
		token, err = l.enclave.CreateAzureAttestationToken(l.binding, l.config.MAAURL)
		if err != nil {
			return fmt.Errorf("obtaining an attestation token from %s: %w", l.config.MAAURL, err)
		}
		facts, err := readOwnToken(token, l.binding)
		if err != nil {
			return fmt.Errorf("token from %s: %w", l.config.MAAURL, err)
		}
		// Half the token's life, measured as a duration: the enclave's clock is the host's, the token's is MAA's.
		refreshAfter = facts.expiresAt.Sub(facts.issuedAt) / 2
		validUntil = "token valid until " + facts.expiresAt.UTC().Format(time.RFC3339)
	}
	leaf, err := issueCertificate(l.key, l.config, token, now)
	if err != nil {
		return err
	}
	certificatePEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf})
	if err := writeFileAtomically(filepath.Join(l.dir, filepath.Base(CertificatePath)), certificatePEM, 0o644); err != nil {
		return err
	}

	l.mu.Lock()
	l.refreshAfter = refreshAfter
	reloaders := append([]func() error(nil), l.reloaders...)
	l.mu.Unlock()
	var reloadErrors []error
	for _, reload := range reloaders {
		if err := reload(); err != nil {
			reloadErrors = append(reloadErrors, err)
		}
	}
	if len(reloadErrors) > 0 {
		return fmt.Errorf("the server did not reload the listener certificate: %w", errors.Join(reloadErrors...))
	}
	l.logf("listener certificate issued for %v %v, binding %s; %s; next refresh in %s",
		l.config.DNSNames, l.config.IPAddresses, l.binding, validUntil, refreshAfter)
	return nil
}

// Refresh reissues the certificate at half the token's life until ctx ends, retrying failures with backoff.
func (l *Listener) Refresh(ctx context.Context) {
	l.refresh(ctx, time.After)
}

func (l *Listener) refresh(ctx context.Context, after func(time.Duration) <-chan time.Time) {
	retryDelay := firstRetryDelay
	l.mu.Lock()
	wait := l.refreshAfter
	l.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-after(wait):
		}
		if err := l.Reissue(); err != nil {
			l.logf("refreshing the listener certificate failed, retrying in %s: %v", retryDelay, err)
			wait = retryDelay
			retryDelay = min(2*retryDelay, maxRetryDelay)
			continue
		}
		retryDelay = firstRetryDelay
		l.mu.Lock()
		wait = l.refreshAfter
		served := len(l.reloaders) > 0
		l.mu.Unlock()
		if !served {
			l.logf("WARNING: no OpenBao listener serves %s (its tls_cert_file): the refreshed certificate is not "+
				"served, and clients will refuse the old one when its token expires", CertificatePath)
		}
	}
}

// writeFileAtomically replaces path, so that a reload never reads half a file.
func writeFileAtomically(path string, data []byte, mode os.FileMode) error {
	temporary := path + ".new"
	if err := os.WriteFile(temporary, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", temporary, err)
	}
	if err := os.Rename(temporary, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return nil
}
