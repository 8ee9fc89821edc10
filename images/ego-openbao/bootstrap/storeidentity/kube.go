package storeidentity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// SecretName is the Kubernetes Secret the record lives in, in the server's namespace. components/openbao.py lets the
// server's service account get, update and create it (attested unseal only).
const SecretName = "openbao-store-identity"

// secretKey is the Secret's data key holding the record (ciphertext and its seal key id only).
const secretKey = "record"

// Where a pod finds the API server and its credentials (Kubernetes' in-cluster configuration). All of it is the
// host's: it can point the enclave at any server, which can only lose or keep an old record, never forge one.
const (
	EnvKubernetesHost   = "KUBERNETES_SERVICE_HOST"
	EnvKubernetesPort   = "KUBERNETES_SERVICE_PORT"
	ServiceAccountDir   = "/var/run/secrets/kubernetes.io/serviceaccount"
	serviceAccountToken = "token"
	serviceAccountCA    = "ca.crt"
	serviceAccountNS    = "namespace"
)

// namespacePattern is a Kubernetes namespace name (RFC 1123 label): it becomes part of a URL path.
var namespacePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// KubernetesStore keeps the record in the Secret SecretName through the API server, with the pod's service account.
type KubernetesStore struct {
	// BaseURL is the API server, https://host:port.
	BaseURL   string
	Namespace string
	// TokenFile is read for every request: projected service account tokens rotate.
	TokenFile string
	Client    *http.Client
}

// KubernetesStoreFromEnv builds the store from the pod's in-cluster configuration (dir: ServiceAccountDir in the
// enclave, a hostfs mount).
func KubernetesStoreFromEnv(getenv func(string) string, dir string) (*KubernetesStore, error) {
	host, port := getenv(EnvKubernetesHost), getenv(EnvKubernetesPort)
	if host == "" || port == "" {
		return nil, fmt.Errorf("%s and %s must name the API server", EnvKubernetesHost, EnvKubernetesPort)
	}
	base := &url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)}
	if parsed, err := url.Parse(base.String()); err != nil || parsed.Hostname() != host || parsed.Port() != port {
		return nil, fmt.Errorf("%s=%q and %s=%q do not make a URL", EnvKubernetesHost, host, EnvKubernetesPort, port)
	}
	namespace, err := os.ReadFile(filepath.Join(dir, serviceAccountNS))
	if err != nil {
		return nil, err
	}
	ns := strings.TrimSpace(string(namespace))
	if !namespacePattern.MatchString(ns) {
		return nil, fmt.Errorf("%s: %q is not a namespace name", filepath.Join(dir, serviceAccountNS), ns)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, serviceAccountCA))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no certificate", filepath.Join(dir, serviceAccountCA))
	}
	return &KubernetesStore{
		BaseURL:   base.String(),
		Namespace: ns,
		TokenFile: filepath.Join(dir, serviceAccountToken),
		Client: &http.Client{
			Timeout:       15 * time.Second,
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func (k *KubernetesStore) String() string {
	return "Secret " + k.Namespace + "/" + SecretName
}

// secret is the part of a v1 Secret this store reads and writes.
type secret struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   secretMetadata    `json:"metadata"`
	Type       string            `json:"type,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"`
}

type secretMetadata struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
}

// Load reads the Secret; a missing Secret (404) is no record.
func (k *KubernetesStore) Load(ctx context.Context) (Stored, error) {
	status, body, err := k.do(ctx, http.MethodGet, k.secretURL(), nil)
	if err != nil {
		return Stored{}, err
	}
	switch status {
	case http.StatusOK:
	case http.StatusNotFound:
		return Stored{}, nil
	default:
		return Stored{}, fmt.Errorf("GET %s answered %d", SecretName, status)
	}
	var read secret
	if err := json.Unmarshal(body, &read); err != nil {
		return Stored{}, fmt.Errorf("the API server's %s is not a Secret: %w", SecretName, err)
	}
	// A Secret without the record (emptied by hand) is a revision to update, with no record in it.
	return Stored{Record: read.Data[secretKey], Revision: read.Metadata.ResourceVersion}, nil
}

// Save creates the Secret (revision "") or replaces the revision loaded; the API server's 409 is ErrConflict.
func (k *KubernetesStore) Save(ctx context.Context, record []byte, revision string) error {
	body, err := json.Marshal(secret{
		APIVersion: "v1",
		Kind:       "Secret",
		Metadata: secretMetadata{Name: SecretName, Namespace: k.Namespace, ResourceVersion: revision,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "openbao-enclave"}},
		Type: "Opaque",
		Data: map[string][]byte{secretKey: record},
	})
	if err != nil {
		return err
	}
	method, target, want := http.MethodPut, k.secretURL(), http.StatusOK
	if revision == "" {
		method, target, want = http.MethodPost, k.secretsURL(), http.StatusCreated
	}
	status, _, err := k.do(ctx, method, target, body)
	switch {
	case err != nil:
		return err
	case status == http.StatusConflict:
		return ErrConflict
	case status != want:
		return fmt.Errorf("%s %s answered %d", method, SecretName, status)
	}
	return nil
}

func (k *KubernetesStore) secretsURL() string {
	return k.BaseURL + "/api/v1/namespaces/" + k.Namespace + "/secrets"
}

func (k *KubernetesStore) secretURL() string {
	return k.secretsURL() + "/" + SecretName
}

func (k *KubernetesStore) do(ctx context.Context, method, target string, body []byte) (int, []byte, error) {
	token, err := os.ReadFile(k.TokenFile)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the service account token: %w", err)
	}
	request, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	request.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	request.Header.Set("Accept", "application/json")
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	response, err := k.Client.Do(request)
	if err != nil {
		// The URL error names the API server, never the token.
		return 0, nil, fmt.Errorf("%s %s: %w", method, SecretName, errors.Unwrap(err))
	}
	defer response.Body.Close()
	content, err := io.ReadAll(io.LimitReader(response.Body, 1<<20))
	if err != nil {
		return 0, nil, err
	}
	return response.StatusCode, content, nil
}
