package auth

// SmartConfiguration returns the body of GET /.well-known/smart-configuration
// (SMART App Launch v2, Backend Services only: no launch, no patient/ or
// user/ scopes) for a gateway whose token
// endpoint is tokenURL, which should be Config.TokenURL. It cannot fail.
func SmartConfiguration(tokenURL string) map[string]any {
	return map[string]any{
		"token_endpoint":                                   tokenURL,
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"grant_types_supported":                            []string{grantClientCredentials},
		"scopes_supported": []string{
			"system/*.cruds", "system/*.rs", "system/*.read", "system/*.write",
			ScopeIngest, ScopeOperator,
		},
		// SMART's capability names (App Launch 2.x, Conformance): v1 scope
		// syntax (system/Patient.read) is accepted as well as v2
		// (system/Patient.rs). permission-v2's granular scopes (with ?) are
		// not granted, and the token endpoint says so (docs/security.md);
		// SMART leaves every search parameter of them optional.
		"capabilities": []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
	}
}
