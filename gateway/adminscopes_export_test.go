package gateway

import "strings"

// AdminScopes is the scope each /admin route of the route table needs, by
// "METHOD path" (for TestAdminScopes: a new admin route must state its
// scope there).
func AdminScopes() map[string]string {
	out := map[string]string{}
	for _, r := range (&Server{}).table() {
		if strings.HasPrefix(r.path, "/admin/") {
			out[r.method+" "+r.path] = r.scope
		}
	}
	return out
}
