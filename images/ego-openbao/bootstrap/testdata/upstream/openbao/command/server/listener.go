// Package server stands in for openbao/openbao v2.6.2 command/server/listener.go.
package server

import (
	"errors"
	"net"

	"github.com/hashicorp/cli"
	"github.com/hashicorp/go-hclog"
	"github.com/openbao/openbao/helper/configutil"
	"github.com/openbao/openbao/helper/listenerutil"
)

// ListenerFactory is the factory function to create a listener.
type ListenerFactory func(*configutil.Listener, hclog.Logger, cli.Ui) (net.Listener, map[string]string, listenerutil.ReloadableCertGetter, error)

// BuiltinListeners is the list of built-in listener types.
var BuiltinListeners = map[string]ListenerFactory{
	"tcp": func(*configutil.Listener, hclog.Logger, cli.Ui) (net.Listener, map[string]string, listenerutil.ReloadableCertGetter, error) {
		return nil, nil, nil, errors.New("stand-in: no listener")
	},
}
