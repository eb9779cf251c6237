package main

import (
	"io"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// clientsCommand is the access review on the configuration (the CLI twin
// of GET /admin/clients): the registered clients and external issuers as
// serve would load them, never a key.
func clientsCommand(args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		args = []string{"list", "-h"}
	}
	if len(args) < 1 || args[0] != "list" {
		return usageError("clients", "the subcommand is list")
	}
	fs := newFlags("clients list")
	configFile := fs.String("config", getenv("GATEWAY_CONFIG"), "the gateway's configuration `FILE`, as serve is given it (GATEWAY_CONFIG)")
	pos, err := parse(fs, "clients list", args[1:], stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("clients list", "takes no arguments")
	}
	if *configFile == "" {
		return usageError("clients list", "--config FILE is required: the configuration that registers the clients")
	}
	fc, err := readConfig(*configFile)
	if err != nil {
		return usageError("clients list", "%v", err)
	}
	out := struct {
		Clients []auth.Registration       `json:"clients"`
		Issuers []auth.IssuerRegistration `json:"issuers"`
	}{[]auth.Registration{}, []auth.IssuerRegistration{}}
	// The signing secret is not needed to list: a stand-in keeps
	// GATEWAY_TOKEN_SECRET out of it.
	s, err := authServer(fc, func(string) string { return "" }, &replayCache{})
	if err != nil {
		return usageError("clients list", "%v", err)
	}
	if s != nil {
		out.Clients, out.Issuers = s.Registrations()
	}
	return printJSON(stdout, out)
}
