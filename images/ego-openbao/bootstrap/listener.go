package bootstrap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
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

// Listener owns the per-start leaf key (generated here, never written outside dir) and the listener CA key, and keeps
// the leaf certificate's attestation fresh and true to the store OpenBao serves.
type Listener struct {
	config   Config
	enclave  Enclave
	dir      string
	leafKey  *ecdsa.PrivateKey
	caKey    *ecdsa.PrivateKey
	caDER    []byte
	identity Identity
	logf     Logf
	now      func() time.Time

	// issueMu makes issuances one at a time (the refresh loop and the store watch both issue) and guards store, the
	// store state the served certificate binds.
	issueMu sync.Mutex
	store   StoreState

	mu           sync.Mutex
	reloaders    []func() error
	refreshAfter time.Duration
	binding      []byte
}

// Start is StartWith for Shamir unseal: a fresh CA key for this start and no seal key to name.
func Start(config Config, enclave Enclave, dir string, logf Logf) (*Listener, error) {
	return StartWith(config, enclave, dir, logf, Identity{})
}

// StartWith generates this start's leaf key, issues the CA certificate for identity.CAKey (a fresh key when nil),
// binds both keys, the identity and the store state into an attestation token (or marks the certificate as
// simulated), and writes the leaf key and certificate (PEM) to dir: in the enclave ListenerDir, so KeyPath and
// CertificatePath. The first certificate says the store is uninitialised: the bootstrap has not read OpenBao's
// health yet (ObserveStore).
func StartWith(config Config, enclave Enclave, dir string, logf Logf, identity Identity) (*Listener, error) {
	return start(config, enclave, dir, logf, time.Now, identity)
}

func start(config Config, enclave Enclave, dir string, logf Logf, now func() time.Time, identity Identity) (*Listener, error) {
	// A fresh leaf key every start: it is the one key that lives in OpenBao's files, and the token binds it anew.
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the listener key: %w", err)
	}
	caKey := identity.CAKey
	if caKey == nil {
		if caKey, err = newCAKey(); err != nil {
			return nil, err
		}
	}
	identity.CAKey = nil
	caDER, err := issueCACertificate(caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
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
	listener := &Listener{config: config, enclave: enclave, dir: dir, leafKey: leafKey, caKey: caKey, caDER: caDER,
		identity: identity, logf: logf, now: now}
	if err := listener.Reissue(); err != nil {
		return nil, err
	}
	return listener, nil
}

// CACertificate is the listener CA certificate (DER) this start serves inside every leaf: what clients pin, and
// what the loopback health check trusts.
func (l *Listener) CACertificate() []byte {
	return append([]byte(nil), l.caDER...)
}

// LeafPublicKey is this start's leaf key: only this process holds its private half.
func (l *Listener) LeafPublicKey() *ecdsa.PublicKey {
	return &l.leafKey.PublicKey
}

// Binding is the enclave-held data of the certificate last issued.
func (l *Listener) Binding() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.binding...)
}

// OnReissue registers a function that makes the server load the certificate file again (OpenBao's listener
// certificate getter: Reload). The file is already current when the server first reads it.
func (l *Listener) OnReissue(reload func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reloaders = append(l.reloaders, reload)
}

// Reissue obtains a fresh token for the same keys and store state, writes a new certificate and has the server
// reload it.
func (l *Listener) Reissue() error {
	l.issueMu.Lock()
	defer l.issueMu.Unlock()
	return l.issue(l.store)
}

// ObserveStore re-issues the certificate with a fresh token when OpenBao's store state differs from the one the
// served certificate binds; it reports whether it did. On error the old certificate and state stay, so the next
// observation tries again.
func (l *Listener) ObserveStore(state StoreState) (bool, error) {
	l.issueMu.Lock()
	defer l.issueMu.Unlock()
	if state == l.store {
		return false, nil
	}
	if err := l.issue(state); err != nil {
		return false, err
	}
	return true, nil
}

// issue runs under issueMu.
func (l *Listener) issue(store StoreState) error {
	binding, err := encodeBinding(&l.leafKey.PublicKey, &l.caKey.PublicKey, l.identity, store)
	if err != nil {
		return err
	}
	now := l.now()
	token := ""
	refreshAfter := CertificateLifetime / 2
	validUntil := "no token (simulation)"
	if !l.config.Simulation {
		token, err = l.enclave.CreateAzureAttestationToken(binding, l.config.MAAURL)
		if err != nil {
			return fmt.Errorf("obtaining an attestation token from %s: %w", l.config.MAAURL, err)
		}
		facts, err := readOwnToken(token, binding)
		if err != nil {
			return fmt.Errorf("token from %s: %w", l.config.MAAURL, err)
		}
		// Half the token's life, measured as a duration: the enclave's clock is the host's, the token's is MAA's.
		refreshAfter = facts.expiresAt.Sub(facts.issuedAt) / 2
		validUntil = "token valid until " + facts.expiresAt.UTC().Format(time.RFC3339)
	}
	leaf, err := issueCertificate(l.leafKey, l.caKey, l.caDER, l.config, token, now)
	if err != nil {
		return err
	}
	certificatePEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf})
	if err := writeFileAtomically(filepath.Join(l.dir, filepath.Base(CertificatePath)), certificatePEM, 0o644); err != nil {
		return err
	}
	l.store = store

	l.mu.Lock()
	l.refreshAfter = refreshAfter
	l.binding = binding
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
		l.config.DNSNames, l.config.IPAddresses, binding, validUntil, refreshAfter)
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
