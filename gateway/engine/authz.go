package engine

import (
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// allow checks that the caller's scopes grant perm ('c', 'r', 'u', 'd',
// 's') on typ ("*" for the whole system): an *auth.Failure (401 without a
// caller, 403 insufficient_scope) otherwise.
func allow(sc *auditlog.Scope, typ string, perm byte) error {
	p := sc.Principal
	if p == nil {
		return &auth.Failure{Status: 401, Reason: "unauthenticated", Description: "authentication required"}
	}
	if !p.Scopes.Allows(typ, perm) {
		return auth.InsufficientScope(p.ClientID, "system/"+typ+"."+string(perm))
	}
	return nil
}
