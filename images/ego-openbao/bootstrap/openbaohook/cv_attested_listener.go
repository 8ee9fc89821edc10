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
)

func init() {
	logger := log.New(os.Stderr, "attested-listener: ", log.LstdFlags|log.LUTC|log.Lmsgprefix)
	// The host chooses the command line; the enclave chooses the configuration: `bao server` runs with the measured
	// file embedded by enclave.json, whatever -config the host passed (dev mode and other commands run unchanged).
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
		listener, err = bootstrap.StartWith(config, egoenclave.Enclave{}, bootstrap.ListenerDir, logger.Printf,
			bootstrap.Identity{Key: prepared.ListenerKey, Binding: prepared.ListenerBinding})
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
}
