// Package fakekube is a stand-in for the Kubernetes API server's v1 Secrets of one namespace, for the store identity
// record (../storeidentity), in the style of net/http/httptest. It copies what the real API server does for the
// requests the record store makes: GET .../secrets/{name} (404 with a Status when absent), POST .../secrets (201;
// 409 AlreadyExists), PUT .../secrets/{name} (200; 409 Conflict when metadata.resourceVersion is stale; 404 when
// absent), a new resourceVersion on every write, and 401 without the bearer token. Nothing else (no RBAC, no watch).
package fakekube

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
)

// Secret is a stored Secret as the fake keeps it.
type Secret struct {
	Name            string
	ResourceVersion string
	Data            map[string][]byte
	Labels          map[string]string
}

// Server is the fake API server, over TLS (httptest's certificate: Certificate() for the pod's ca.crt).
type Server struct {
	*httptest.Server
	Namespace string
	Token     string

	mu       sync.Mutex
	secrets  map[string]Secret
	version  int
	requests []string
	// Fail, when set, answers every request with this status (an API server that is down or refuses).
	Fail int
}

// Start serves the namespace, accepting the bearer token.
func Start(namespace, token string) *Server {
	server := &Server{Namespace: namespace, Token: token, secrets: map[string]Secret{}}
	server.Server = httptest.NewTLSServer(http.HandlerFunc(server.serve))
	return server
}

// Secret returns the stored Secret and whether it exists.
func (s *Server) Secret(name string) (Secret, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	secret, ok := s.secrets[name]
	return secret, ok
}

// Put stores a Secret as another writer would (a new resourceVersion).
func (s *Server) Put(name string, data map[string][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	s.secrets[name] = Secret{Name: name, ResourceVersion: strconv.Itoa(s.version), Data: data}
}

// Requests lists "METHOD path" of every request.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

type wireSecret struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		ResourceVersion string            `json:"resourceVersion,omitempty"`
		Labels          map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Type string            `json:"type,omitempty"`
	Data map[string][]byte `json:"data,omitempty"`
}

func status(w http.ResponseWriter, code int, reason, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure",
		"reason": reason, "message": message, "code": code})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	if s.Fail != 0 {
		status(w, s.Fail, "InternalError", "failing as told")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		status(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	prefix := "/api/v1/namespaces/" + s.Namespace + "/secrets"
	name, named := strings.CutPrefix(r.URL.Path, prefix+"/")
	if !named && r.URL.Path != prefix {
		status(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	switch {
	case r.Method == http.MethodGet && named:
		secret, ok := s.secrets[name]
		if !ok {
			status(w, http.StatusNotFound, "NotFound", `secrets "`+name+`" not found`)
			return
		}
		s.write(w, http.StatusOK, secret)
	case r.Method == http.MethodPost && !named:
		body, ok := s.read(w, r)
		if !ok {
			return
		}
		if _, exists := s.secrets[body.Metadata.Name]; exists {
			status(w, http.StatusConflict, "AlreadyExists", `secrets "`+body.Metadata.Name+`" already exists`)
			return
		}
		s.write(w, http.StatusCreated, s.store(body))
	case r.Method == http.MethodPut && named:
		body, ok := s.read(w, r)
		if !ok {
			return
		}
		current, exists := s.secrets[name]
		switch {
		case !exists:
			status(w, http.StatusNotFound, "NotFound", `secrets "`+name+`" not found`)
		case body.Metadata.Name != name:
			status(w, http.StatusBadRequest, "BadRequest", "the name of the object does not match the name on the URL")
		case body.Metadata.ResourceVersion != "" && body.Metadata.ResourceVersion != current.ResourceVersion:
			status(w, http.StatusConflict, "Conflict", "the object has been modified; please apply your changes to the latest version and try again")
		default:
			s.write(w, http.StatusOK, s.store(body))
		}
	default:
		status(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "the server does not allow this method")
	}
}

func (s *Server) read(w http.ResponseWriter, r *http.Request) (wireSecret, bool) {
	var body wireSecret
	content, err := io.ReadAll(r.Body)
	if err != nil || json.Unmarshal(content, &body) != nil || body.Kind != "Secret" || body.APIVersion != "v1" {
		status(w, http.StatusBadRequest, "BadRequest", "not a v1 Secret")
		return body, false
	}
	if body.Metadata.Namespace != "" && body.Metadata.Namespace != s.Namespace {
		status(w, http.StatusBadRequest, "BadRequest", "the namespace of the object does not match the namespace on the request")
		return body, false
	}
	return body, true
}

func (s *Server) store(body wireSecret) Secret {
	s.version++
	secret := Secret{Name: body.Metadata.Name, ResourceVersion: strconv.Itoa(s.version), Data: body.Data, Labels: body.Metadata.Labels}
	s.secrets[secret.Name] = secret
	return secret
}

func (s *Server) write(w http.ResponseWriter, code int, secret Secret) {
	var out wireSecret
	out.APIVersion, out.Kind, out.Type, out.Data = "v1", "Secret", "Opaque", secret.Data
	out.Metadata.Name, out.Metadata.Namespace, out.Metadata.ResourceVersion, out.Metadata.Labels =
		secret.Name, s.Namespace, secret.ResourceVersion, secret.Labels
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(out)
}
