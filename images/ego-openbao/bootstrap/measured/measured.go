// Package measured is the OpenBao configuration the enclave runs, compiled into the enclave binary (go:embed), so
// it is part of MRENCLAVE. The bootstrap writes these bytes itself to the paths OpenBao reads
// (bootstrap.WriteMeasuredFiles) before anything else in the hook runs: no file the host, EGo's premain or anything
// else that ran earlier in the enclave put there is read. enclave.json embeds no files.
package measured

import (
	_ "embed"
	"strings"
)

// Server is the OpenBao server configuration (bootstrap.MeasuredConfigPath).
//
//go:embed openbao.hcl
var Server []byte

// FileStorage and PostgreSQLStorage are the two storage configurations, one of which the launch plan adds as the
// host's CV_STORAGE names (bootstrap.FileStorageConfigPath, bootstrap.PostgreSQLStorageConfigPath).
//
//go:embed storage-file.hcl
var FileStorage []byte

//go:embed storage-postgresql.hcl
var PostgreSQLStorage []byte

// StaticSeal is the static seal of attested unseal (bootstrap.AttestedUnsealConfigPath).
//
//go:embed seal-static.hcl
var StaticSeal []byte

//go:embed postgresql-hosts.txt
var postgreSQLHostsFile string

// PostgreSQLHostSuffixes are the DNS suffixes a PostgreSQL server's host name may end in (postgresql-hosts.txt, one
// per line, `#` starts a comment). The host chooses the URL; this measured list bounds which servers it may name.
func PostgreSQLHostSuffixes() []string {
	var suffixes []string
	for _, line := range strings.Split(postgreSQLHostsFile, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.ToLower(strings.TrimSpace(line)); line != "" {
			suffixes = append(suffixes, line)
		}
	}
	return suffixes
}
