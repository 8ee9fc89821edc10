package bootstrap

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// EnvPostgreSQLURL is OpenBao's PostgreSQL connection URL (physical/postgresql, BAO_PG_CONNECTION_URL), which the
// pod takes from the Kubernetes Secret `openbao-storage`: the host's. pgx v5 (OpenBao v2.6.2 pins v5.10.0) reads it.
const EnvPostgreSQLURL = "BAO_PG_CONNECTION_URL"

// postgreSQLURLParameters are the only query parameters the enclave lets through. pgx (pgconn/config.go) reads many
// more, and several name files in the enclave or weaken TLS: sslrootcert (a CA of the host's choice, or "system"),
// sslcert/sslkey (a client key, e.g. the listener's), sslpassword, passfile, service/servicefile, sslmode other than
// verify-full, sslsni=0 (no SNI), sslnegotiation, target_session_attrs, krbsrvname/krbspn, require_auth,
// channel_binding, min/max_protocol_version, options, and anything pgx would send the server as a runtime parameter.
// An allow-list rather than a deny-list, so a parameter a later pgx adds is refused until someone reviews it.
var postgreSQLURLParameters = []string{"sslmode", "connect_timeout", "application_name"}

// pgxParameters are the connection parameters pgx v5.10.0 knows (pgconn/config.go: notRuntimeParams, and the
// runtime parameters libpq documents), which a refusal may name. Any other name, like every host, port and value in
// the URL, is not repeated in a message: a password with an unescaped '/', '?' or '@' spills into those parts.
var pgxParameters = []string{
	"host", "port", "database", "dbname", "user", "password", "passfile", "connect_timeout", "sslmode", "sslkey",
	"sslcert", "sslrootcert", "sslnegotiation", "sslpassword", "sslsni", "sslcrl", "sslcrldir", "krbspn",
	"krbsrvname", "target_session_attrs", "service", "servicefile", "min_protocol_version", "max_protocol_version",
	"channel_binding", "require_auth", "application_name", "options", "search_path", "timezone", "client_encoding",
}

// CheckPostgreSQLURL refuses a URL that could make pgx trust a server other than one the measured rules allow, or
// read a file: only the URL form postgres://user:password@host[:port]/database?sslmode=verify-full[&connect_timeout=N]
// [&application_name=...], one DNS host name ending in one of hostSuffixes (measured.PostgreSQLHostSuffixes), TLS
// verified against the measured CA bundle (no sslrootcert: pgx then uses Go's system roots, which is that bundle).
// The keyword/value form (host=... sslmode=...) is refused: the program writes URLs, and one form is one parser.
// Error messages repeat no part of the URL (pgxParameters says why), so never the password.
func CheckPostgreSQLURL(raw string, hostSuffixes []string) error {
	const form = "postgres://<user>:<password>@<host>:5432/<database>?sslmode=verify-full"
	if !strings.HasPrefix(raw, "postgres://") && !strings.HasPrefix(raw, "postgresql://") {
		if raw == "" {
			return fmt.Errorf("%s is not set: storage postgresql needs %s", EnvPostgreSQLURL, form)
		}
		return fmt.Errorf("%s is not a postgres:// URL (the keyword/value form is refused): %s", EnvPostgreSQLURL, form)
	}
	parsed, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, password included: say only that it did not parse.
		return fmt.Errorf("%s does not parse as a URL: %s", EnvPostgreSQLURL, form)
	}
	var problems []string
	if parsed.Fragment != "" || parsed.Opaque != "" {
		problems = append(problems, "a fragment or an opaque part")
	}
	if parsed.User == nil || parsed.User.Username() == "" {
		problems = append(problems, "no user name")
	}
	problems = append(problems, checkPostgreSQLHost(parsed.Host, hostSuffixes)...)
	if database := strings.TrimPrefix(parsed.Path, "/"); database == "" || strings.Contains(database, "/") {
		problems = append(problems, "the path must name one database")
	}
	query, err := url.ParseQuery(parsed.RawQuery)
	if err != nil {
		problems = append(problems, "a query that does not parse")
	}
	names := make([]string, 0, len(query))
	for name := range query {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		values := query[name]
		switch {
		case !slices.Contains(postgreSQLURLParameters, name) && slices.Contains(pgxParameters, name):
			problems = append(problems, fmt.Sprintf("parameter %s is not allowed (allowed: %s)", name,
				strings.Join(postgreSQLURLParameters, ", ")))
		case !slices.Contains(postgreSQLURLParameters, name):
			problems = append(problems, fmt.Sprintf("a parameter pgx does not know, or part of a password with an "+
				"unescaped '?' (allowed: %s; percent-encode the password)", strings.Join(postgreSQLURLParameters, ", ")))
		case len(values) != 1:
			problems = append(problems, fmt.Sprintf("parameter %s given %d times", name, len(values)))
		case name == "connect_timeout":
			if seconds, err := strconv.Atoi(values[0]); err != nil || seconds < 0 {
				problems = append(problems, "connect_timeout: seconds, a whole number")
			}
		}
	}
	if sslmode := query["sslmode"]; len(sslmode) != 1 || sslmode[0] != "verify-full" {
		problems = append(problems, "sslmode must be verify-full, once (the server's certificate and name checked "+
			"against the measured CA bundle)")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s is refused (%s): %s", EnvPostgreSQLURL, form, strings.Join(problems, "; "))
	}
	return nil
}

// checkPostgreSQLHost: one host (pgx would try a comma-separated list in turn), a DNS name (no IP literal, no Unix
// socket directory), under one of the measured suffixes, and an optional port.
func checkPostgreSQLHost(hostPort string, hostSuffixes []string) []string {
	if hostPort == "" {
		return []string{"no host"}
	}
	if strings.Contains(hostPort, ",") {
		return []string{"more than one host: give exactly one"}
	}
	host, port := hostPort, ""
	if i := strings.LastIndex(hostPort, ":"); i >= 0 && !strings.Contains(hostPort, "]") {
		host, port = hostPort[:i], hostPort[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
			return []string{"the port is not a port number (a password with an unescaped '/' looks like this: " +
				"percent-encode it)"}
		}
	}
	host = strings.ToLower(host)
	if strings.HasPrefix(host, "[") || net.ParseIP(host) != nil {
		return []string{"the host is an IP address: give the server's DNS name, which its certificate names"}
	}
	if !validDNSName(host) {
		return []string{"the host is not a DNS name"}
	}
	for _, suffix := range hostSuffixes {
		if strings.HasSuffix(host, suffix) && len(host) > len(suffix) && strings.HasPrefix(suffix, ".") {
			return nil
		}
	}
	return []string{fmt.Sprintf("the host does not end in a measured suffix (%s, bootstrap/measured/postgresql-hosts.txt)",
		strings.Join(hostSuffixes, ", "))}
}
