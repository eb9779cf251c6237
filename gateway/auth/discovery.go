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
			"system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
			ScopeIngest, ScopeOperator, ScopeAuditor,
		},
		// SMART's capability names (App Launch 2.x, Conformance): v1 scope
		// syntax (system/Patient.read) is accepted as well as v2
		// (system/Patient.rs), and permission-v2's granular scopes
		// restricted by token search parameters
		// (system/Observation.rs?category=system|code), enforced on every
		// way a resource is read, searched, written or exported; other
		// restrictions are refused, the token endpoint says why
		// (docs/security.md).
		"capabilities": []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
	}
}
