// Package keyrelease unseals OpenBao inside the enclave without a human: it has Azure Key Vault release an HSM key
// to this enclave only (Secure Key Release, gated on a Microsoft Azure Attestation token), derives OpenBao's static
// seal key from it, and derives from it the listener CA key (the same for every replica and restart) and the key of
// the store identity record.
//
// It runs in the enclave before OpenBao's main, called by the hook (openbaohook/) through Prepare. Standard library
// only, so it is unit-tested offline against the fakes in ../fakemaa and ../fakekeyvault. README.md in this
// directory has the flow, the formats and the threat model.
package keyrelease

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"confidential-vault.internal/bootstrap"
	"confidential-vault.internal/bootstrap/storeidentity"
)

// Attester is the EGo call the release makes; bootstrap/egoenclave's adapter satisfies it. The release does not use
// EGo's CreateAzureAttestationToken: that sends runtime data of type Binary, which MAA returns only as x-ms-sgx-ehd,
// while Key Vault reads the wrapping key from x-ms-runtime, which MAA fills from runtime data of type JSON (maa.go).
type Attester interface {
	// GetRemoteReport returns an SGX report of this enclave carrying reportData (at most 64 bytes).
	GetRemoteReport(reportData []byte) ([]byte, error)
}

// WrappingKeyBits is the size of the RSA key the released key is wrapped to. The wrapped copy crosses the host's
// network, where it can be recorded, and unwraps to the key that protects every stored secret for as long as that
// data lives: 4096 rather than 3072 (README, "Wrapping key"); it costs about half a second once per start.
const WrappingKeyBits = 4096

// StartTimeout bounds the whole release: with retries it ends well within it, or the pod is restarted.
const StartTimeout = 2 * time.Minute

// Prepared is what the hook hands on before OpenBao's main runs.
type Prepared struct {
	// Listener is what the listener binds besides its own leaf key: the CA key derived from the current key version
	// and the release's facts (bootstrap.StartWith).
	Listener bootstrap.Identity
	// StoreIdentityKeys open and write the store identity record (../storeidentity).
	StoreIdentityKeys storeidentity.Keys
	// SealEnv must be set in the enclave's environment (os.Setenv) before OpenBao reads its seal: the static
	// seal's key ids, and empty key values and seal types so that only the measured seal and the files in SealDir
	// are used.
	SealEnv map[string]string
}

// Releaser performs one release; its fields other than config are replaced in tests.
type Releaser struct {
	config   Config
	attester Attester
	maaURL   string
	logf     func(string, ...any)

	client         *http.Client
	roots          *x509.CertPool
	retry          retrier
	now            func() time.Time
	newWrappingKey func() (*rsa.PrivateKey, error)
	sealDir        string
}

// Prepare releases the seal key (and, during a rotation, the previous one), writes the static seal's key files,
// derives the listener CA and store identity keys, and returns what the hook needs. TLS to Entra and Key Vault, and Key Vault's
// signature on the release, are checked against the system roots: in the enclave, the CA bundle embedded (and
// measured) by enclave.json. On error, OpenBao must not start.
func Prepare(ctx context.Context, config Config, attester Attester, maaURL string, logf func(string, ...any)) (*Prepared, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		return nil, fmt.Errorf("loading the CA bundle: %w", err)
	}
	return newReleaser(config, attester, maaURL, logf, roots).prepare(ctx)
}

func newReleaser(config Config, attester Attester, maaURL string, logf func(string, ...any), roots *x509.CertPool) *Releaser {
	return &Releaser{
		config:   config,
		attester: attester,
		maaURL:   maaURL,
		logf:     logf,
		client: &http.Client{
			Timeout: 30 * time.Second,
			// No proxy and no redirects: the enclave talks to the services it names, and a bearer token never
			// follows a redirect.
			Transport: &http.Transport{
				TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
				TLSHandshakeTimeout: 10 * time.Second,
				ForceAttemptHTTP2:   true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		roots:          roots,
		retry:          retrier{sleep: sleepContext, logf: logf},
		now:            time.Now,
		newWrappingKey: func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, WrappingKeyBits) },
		sealDir:        SealDir,
	}
}

func (r *Releaser) prepare(ctx context.Context) (*Prepared, error) {
	started := time.Now()
	wrappingKey, err := r.newWrappingKey()
	if err != nil {
		return nil, fmt.Errorf("generating the wrapping key: %w", err)
	}
	target, err := r.releaseTarget(ctx, &wrappingKey.PublicKey)
	if err != nil {
		return nil, err
	}
	accessToken, err := r.entraToken(ctx)
	if err != nil {
		return nil, err
	}

	current, err := r.releaseAndDerive(ctx, accessToken, target, r.config.Key, wrappingKey)
	if err != nil {
		return nil, err
	}
	defer current.clear()
	var previous *derivedKeys
	if r.config.Previous != nil {
		if previous, err = r.releaseAndDerive(ctx, accessToken, target, *r.config.Previous, wrappingKey); err != nil {
			return nil, fmt.Errorf("the previous seal key (%s): %w", EnvSealPreviousKeyID, err)
		}
		defer previous.clear()
	}

	sealEnv, err := writeSealKeys(r.sealDir, current, previous)
	if err != nil {
		return nil, fmt.Errorf("writing the static seal keys: %w", err)
	}
	prepared := &Prepared{
		Listener: bootstrap.Identity{
			CAKey:                current.listenerCA,
			SealKeyID:            r.config.Key.String(),
			ReleaseJWKThumbprint: Thumbprint(&wrappingKey.PublicKey),
		},
		StoreIdentityKeys: storeIdentityKeys(current, previous),
		SealEnv:           sealEnv,
	}
	if r.config.Previous != nil {
		prepared.Listener.PreviousSealKeyID = r.config.Previous.String()
	}
	r.logf("seal key released from %s and written to %s in %s; static seal key id %s",
		r.config.Key, r.sealDir, time.Since(started).Round(time.Millisecond), sealEnv[EnvStaticSealCurrentKeyID])
	return prepared, nil
}

// releaseTarget attests the wrapping key for Key Vault (runtime data of type JSON, so that MAA puts it into
// x-ms-runtime) and checks that the token binds exactly that data.
func (r *Releaser) releaseTarget(ctx context.Context, wrappingKey *rsa.PublicKey) (string, error) {
	data, err := ReleaseTargetData(wrappingKey)
	if err != nil {
		return "", err
	}
	return r.attestJSON(ctx, data)
}

func (r *Releaser) releaseAndDerive(ctx context.Context, accessToken, target string, keyID KeyID, wrappingKey *rsa.PrivateKey) (*derivedKeys, error) {
	released, err := r.releaseKey(ctx, accessToken, target, keyID, wrappingKey)
	if err != nil {
		return nil, err
	}
	keys, err := deriveKeys(keyID, released)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyID, err)
	}
	return keys, nil
}
