package bootstrap

import (
	"strings"
	"testing"

	"confidential-vault.internal/bootstrap/measured"
)

// TestPostgreSQLURLRules: the host's BAO_PG_CONNECTION_URL reaches pgx only as one Azure server, TLS verified against
// the measured bundle, naming no file; every refusal says why without repeating the password.
func TestPostgreSQLURLRules(t *testing.T) {
	suffixes := measured.PostgreSQLHostSuffixes()
	if len(suffixes) != 1 || suffixes[0] != ".postgres.database.azure.com" {
		t.Fatalf("measured suffixes %q", suffixes)
	}
	const password = "Pa55-w0rd"
	const server = "cv-prod-1a2b3c4d.postgres.database.azure.com"
	for _, good := range []string{
		// What components/database.py writes.
		"postgres://openbao:" + password + "@" + server + ":5432/openbao?sslmode=verify-full",
		"postgresql://openbao:" + password + "@" + strings.ToUpper(server) + "/openbao?sslmode=verify-full&connect_timeout=10",
		"postgres://openbao:p%2Fa%3Fs%40s@" + server + ":5432/openbao?application_name=openbao&sslmode=verify-full",
	} {
		if err := CheckPostgreSQLURL(good, suffixes); err != nil {
			t.Errorf("%s refused: %v", good, err)
		}
	}
	base := "postgres://openbao:" + password + "@" + server + ":5432/openbao?sslmode=verify-full"
	for _, bad := range []struct{ url, says string }{
		{"", "is not set"},
		{"host=" + server + " user=openbao password=" + password + " sslmode=verify-full", "keyword/value form is refused"},
		{"POSTGRES://openbao:" + password + "@" + server + "/openbao?sslmode=verify-full", "keyword/value form is refused"},
		{strings.Replace(base, "verify-full", "disable", 1), "sslmode must be verify-full"},
		{strings.Replace(base, "verify-full", "require", 1), "sslmode must be verify-full"},
		{strings.Replace(base, "verify-full", "verify-ca", 1), "sslmode must be verify-full"},
		{strings.Replace(base, "?sslmode=verify-full", "", 1), "sslmode must be verify-full"},
		{base + "&sslmode=disable", "sslmode given 2 times"},
		{base + "&sslrootcert=/openbao/data/host-ca.pem", "parameter sslrootcert is not allowed"},
		{base + "&sslrootcert=system", "parameter sslrootcert is not allowed"},
		{base + "&sslcert=/run/bao-tls/listener.crt&sslkey=/run/bao-tls/listener.key", "parameter sslcert is not allowed"},
		{base + "&sslkey=/run/bao-tls/listener.key", "parameter sslkey is not allowed"},
		{base + "&sslpassword=x", "parameter sslpassword is not allowed"},
		{base + "&sslcrl=/openbao/data/crl", "parameter sslcrl is not allowed"},
		{base + "&passfile=/openbao/data/pgpass", "parameter passfile is not allowed"},
		{base + "&service=evil&servicefile=/openbao/data/pg_service.conf", "parameter service is not allowed"},
		{base + "&sslsni=0", "parameter sslsni is not allowed"},
		{base + "&sslnegotiation=direct", "parameter sslnegotiation is not allowed"},
		{base + "&target_session_attrs=any", "parameter target_session_attrs is not allowed"},
		{base + "&host=evil.example.com", "parameter host is not allowed"},
		{base + "&dbname=other", "parameter dbname is not allowed"},
		{base + "&options=-c%20search_path%3Devil", "parameter options is not allowed"},
		{base + "&connect_timeout=soon", "connect_timeout: seconds"},
		{"postgres://openbao:" + password + "@evil.example.com:5432/openbao?sslmode=verify-full", "does not end in a measured suffix"},
		{"postgres://openbao:" + password + "@" + server + ".evil.example.com/openbao?sslmode=verify-full", "does not end in a measured suffix"},
		{"postgres://openbao:" + password + "@evilpostgres.database.azure.com/openbao?sslmode=verify-full", "does not end in a measured suffix"},
		{"postgres://openbao:" + password + "@.postgres.database.azure.com/openbao?sslmode=verify-full", "not a DNS name"},
		{"postgres://openbao:" + password + "@" + server + "," + "other.postgres.database.azure.com/openbao?sslmode=verify-full", "more than one host"},
		{"postgres://openbao:" + password + "@10.0.0.4:5432/openbao?sslmode=verify-full", "IP address"},
		{"postgres://openbao:" + password + "@[fd00::4]:5432/openbao?sslmode=verify-full", "IP address"},
		{"postgres://openbao:" + password + "@%2Fvar%2Frun%2Fpostgresql/openbao?sslmode=verify-full", "parse"},
		{"postgres://openbao:" + password + "@" + server + ":99999/openbao?sslmode=verify-full", "not a port number"},
		{"postgres://openbao:" + password + "@" + server + "/?sslmode=verify-full", "one database"},
		{"postgres://" + server + "/openbao?sslmode=verify-full", "no user name"},
		{base + "#fragment", "a fragment"},
	} {
		err := CheckPostgreSQLURL(bad.url, suffixes)
		if err == nil {
			t.Errorf("%s: accepted", bad.url)
			continue
		}
		if !strings.Contains(err.Error(), bad.says) {
			t.Errorf("%s: %v; want it to say %q", bad.url, err, bad.says)
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%s: the refusal shows the password: %v", bad.url, err)
		}
	}

	// A password with unescaped '/', '?' or '@' spills into the host, port, path or query: still never repeated.
	for _, spill := range []struct{ password, url string }{
		{"abc/defghij", "postgres://openbao:abc/defghij@" + server + "/openbao?sslmode=verify-full"},
		{"abc?defghij", "postgres://openbao:abc?defghij@" + server + "/openbao?sslmode=verify-full"},
		{"ab@cd/efghij", "postgres://openbao:ab@cd/efghij@" + server + "/openbao?sslmode=verify-full"},
		{"hunter2secret", "postgres://openbao:hunter2secret@" + server + "/openbao?sslmode=hunter2secret"},
		{"hunter2secret", "postgres://openbao:hunter2secret@" + server + "/openbao?sslmode=verify-full&connect_timeout=hunter2secret"},
		{"hunter2secret", "postgres://openbao:hunter2secret@hunter2secret.example.com/openbao?sslmode=verify-full"},
	} {
		err := CheckPostgreSQLURL(spill.url, suffixes)
		if err == nil {
			t.Errorf("%s: accepted", spill.url)
			continue
		}
		for _, part := range []string{spill.password, "defghij", "efghij", "hunter2"} {
			if strings.Contains(spill.password, part) && strings.Contains(err.Error(), part) {
				t.Errorf("%s: the refusal shows part of the password (%q): %v", spill.url, part, err)
			}
		}
	}
}
