//go:build cv_enclave

// The attested listener's hook into OpenBao (v2.6.2), without changing OpenBao's code: the image build copies this
// file next to OpenBao's main.go (package main), so its init runs before OpenBao's main. It fixes the command line
// and the seal environment, releases the seal key when the host names one (keyrelease, attested unseal), and starts
// the attested listener. See ../README.md and ../keyrelease/README.md.
package main

import (
	"context"
	"log"
	"net"
	"os"
	"strings"

	"github.com/hashicorp/cli"
	"github.com/hashicorp/go-hclog"
	"github.com/openbao/openbao/command/server"
	"github.com/openbao/openbao/helper/configutil"
	"github.com/openbao/openbao/helper/listenerutil"

	"confidential-vault.internal/bootstrap"
	"confidential-vault.internal/bootstrap/egoenclave"
	"confidential-vault.internal/bootstrap/keyrelease"
	"confidential-vault.internal/bootstrap/measured"
	"confidential-vault.internal/bootstrap/storeidentity"
)

func init() {
	logger := log.New(os.Stderr, "attested-listener: ", log.LstdFlags|log.LUTC|log.Lmsgprefix)
	// First, before anything reads the environment, a file or the command line: an enclave the host steered (EGo's
	// MarbleRun premain, a variable enclave.json does not forward) stops here (../premain.go).
	if err := bootstrap.RefuseHostSteering(os.Environ(), bootstrap.FileSystemRoot, os.Stat); err != nil {
		logger.Fatalf("refusing to start OpenBao: %v", err)
	}
	// Then the measured configuration and CA bundle, compiled into this binary, replace whatever is at their paths,
	// before any TLS connection (Go loads its roots on first use) and before OpenBao reads them (../measuredfiles.go).
	measuredFiles, err := bootstrap.MeasuredFiles(measured.CABundle)
	if err != nil {
		logger.Fatalf("refusing to start OpenBao: %v", err)
	}
	if err := bootstrap.WriteMeasuredFiles(bootstrap.FileSystemRoot, measuredFiles); err != nil {
		logger.Fatalf("refusing to start OpenBao: %v", err)
	}
	// The host chooses the command line; the enclave chooses the configuration: `bao server` runs with the measured
	// files just written, whatever -config the host passed (dev mode and other commands run unchanged).
	plan, err := bootstrap.PlanLaunch(os.Args[1:], os.LookupEnv)
	if err != nil {
		logger.Fatalf("refusing to start OpenBao: %v", err)
	}
	// The seal is the measured configuration's: no variable may replace its type or its keys (every server launch).
	for _, name := range plan.Unset {
		if _, set := os.LookupEnv(name); set {
			logger.Printf("ignoring %s from the host", name)
		}
		if err := os.Unsetenv(name); err != nil {
			logger.Fatalf("refusing to start OpenBao: removing %s: %v", name, err)
		}
	}
	if plan.Launch != bootstrap.MeasuredServer {
		return
	}
	for _, ignored := range plan.IgnoredConfigs {
		logger.Printf("ignoring -config=%s from the host", ignored)
	}
	logger.Printf("running bao %s", strings.Join(plan.Args, " "))
	os.Args = append(os.Args[:1:1], plan.Args...)

	config, err := bootstrap.ConfigFromEnv(os.Getenv)
	if err != nil {
		logger.Fatalf("refusing to start OpenBao: %v", err)
	}
	sealConfig, err := keyrelease.ConfigFromEnv(os.Getenv)
	if err != nil {
		logger.Fatalf("refusing to start OpenBao: %v", err)
	}
	if (sealConfig != nil) != plan.AttestedUnseal {
		// One variable decides both (bootstrap.EnvSealKeyID); a disagreement is a bug, never a Shamir fallback.
		logger.Fatalf("refusing to start OpenBao: the launch plan and the key release disagree about %s", keyrelease.EnvSealKeyID)
	}
	var listener *bootstrap.Listener
	// With attested unseal, the store identity record (storeidentity) decides on each store OpenBao reports; with
	// Shamir there is no enclave-only key to protect a record, and the client's cluster_id pin stands alone.
	var storeCheck func(context.Context, bootstrap.StoreState) error
	if sealConfig == nil {
		listener, err = bootstrap.Start(config, egoenclave.Enclave{}, bootstrap.ListenerDir, logger.Printf)
	} else {
		if config.Simulation {
			logger.Fatalf("refusing to start OpenBao: %s is set, but attested unseal needs SGX (%s=1)", keyrelease.EnvSealKeyID, bootstrap.EnvSimulation)
		}
		ctx, cancel := context.WithTimeout(context.Background(), keyrelease.StartTimeout)
		var prepared *keyrelease.Prepared
		prepared, err = keyrelease.Prepare(ctx, *sealConfig, egoenclave.Enclave{}, config.MAAURL, logger.Printf)
		cancel()
		if err != nil {
			logger.Fatalf("refusing to start OpenBao: %v", err)
		}
		for name, value := range prepared.SealEnv {
			if err := os.Setenv(name, value); err != nil {
				logger.Fatalf("refusing to start OpenBao: setting %s: %v", name, err)
			}
		}
		recordStore, storeErr := storeidentity.KubernetesStoreFromEnv(os.Getenv, storeidentity.ServiceAccountDir)
		if storeErr != nil {
			logger.Fatalf("refusing to start OpenBao: the store identity record: %v", storeErr)
		}
		storeCheck = (&storeidentity.Checker{Store: recordStore, Keys: prepared.StoreIdentityKeys, Logf: logger.Printf}).Check
		listener, err = bootstrap.StartWith(config, egoenclave.Enclave{}, bootstrap.ListenerDir, logger.Printf, prepared.Listener)
	}
	if err != nil {
		logger.Fatalf("refusing to start OpenBao: %v", err)
	}

	// OpenBao reloads listener certificates only on SIGHUP, and signals do not reach an EGo enclave: the refresh
	// calls the reload of every TCP listener that serves the bootstrap's certificate itself.
	tcpListener := server.BuiltinListeners["tcp"]
	server.BuiltinListeners["tcp"] = func(l *configutil.Listener, logger hclog.Logger, ui cli.Ui) (net.Listener, map[string]string, listenerutil.ReloadableCertGetter, error) {
		ln, props, certGetter, err := tcpListener(l, logger, ui)
		if err == nil && certGetter != nil && l.TLSCertFile == bootstrap.CertificatePath {
			listener.OnReissue(certGetter.Reload)
		}
		return ln, props, certGetter, err
	}
	go listener.Refresh(context.Background())
	// The certificate binds the store OpenBao serves, read over loopback TLS pinned to this start's own leaf key.
	go func() {
		if err := listener.WatchStore(context.Background(), bootstrap.LoopbackHealthURL, storeCheck); err != nil {
			logger.Fatalf("stopping OpenBao: %v", err)
		}
	}()
}
