// Package fakeopenbao is a stand-in for OpenBao's GET /v1/sys/health, for the bootstrap's store watch
// (../storehealth.go), in the style of net/http/httptest. It copies OpenBao v2.6.2 http/sys_health.go: the status code
// chosen from initialized/sealed/standby and the query parameters uninitcode, sealedcode, standbycode, activecode and
// standbyok; the body's initialized, sealed, standby and, only while unsealed, cluster_name and cluster_id (omitted
// when empty). Tests that can run the real binary (tests/integration, cmd/storecheck) use `bao server` instead.
package fakeopenbao

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
)

// State is what the fake reports.
type State struct {
	Initialized bool
	Sealed      bool
	Standby     bool
	ClusterID   string
}

// Server serves sys/health over TLS with the certificate it is given.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	state    State
	requests int
}

// Start serves with certificate (the listener's files, as OpenBao's listener loads them).
func Start(certificate tls.Certificate, state State) *Server {
	server := &Server{state: state}
	server.Server = httptest.NewUnstartedServer(http.HandlerFunc(server.health))
	server.TLS = &tls.Config{Certificates: []tls.Certificate{certificate}}
	server.StartTLS()
	return server
}

// Set changes what the fake reports from the next request on.
func (s *Server) Set(state State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = state
}

// Requests counts the health requests served.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/sys/health" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	state := s.state
	s.requests++
	s.mu.Unlock()

	query := r.URL.Query()
	statusCode := func(name string, fallback int) (int, bool) {
		values, found := query[name]
		if !found {
			return fallback, true
		}
		code, err := strconv.Atoi(values[0])
		return code, err == nil
	}
	standbyOK := false
	if values, found := query["standbyok"]; found {
		var err error
		if standbyOK, err = strconv.ParseBool(values[0]); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
	}
	uninitCode, ok1 := statusCode("uninitcode", http.StatusNotImplemented)
	sealedCode, ok2 := statusCode("sealedcode", http.StatusServiceUnavailable)
	standbyCode, ok3 := statusCode("standbycode", http.StatusTooManyRequests)
	activeCode, ok4 := statusCode("activecode", http.StatusOK)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	code := activeCode
	switch {
	case !state.Initialized:
		code = uninitCode
	case state.Sealed:
		code = sealedCode
	case state.Standby && !standbyOK:
		code = standbyCode
	}
	body := map[string]any{
		"initialized": state.Initialized, "sealed": state.Sealed, "standby": state.Standby,
		"performance_standby": false, "replication_performance_mode": "disabled", "replication_dr_mode": "disabled",
		"server_time_utc": 1764979200, "version": "2.6.2",
	}
	if !state.Sealed && state.ClusterID != "" {
		body["cluster_name"] = "vault-cluster-fake"
		body["cluster_id"] = state.ClusterID
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
