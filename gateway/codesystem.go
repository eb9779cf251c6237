package gateway

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// readCodeSystem serves the gateway's own CodeSystems at their canonical ids.
func (s *Server) readCodeSystem(c echo.Context) error {
	for _, cs := range CodeSystems() {
		if cs.Id != nil && *cs.Id == c.Param("id") {
			return writeResource(c, http.StatusOK, cs)
		}
	}
	return errorf(http.StatusNotFound, "not-found", "resource-unknown", "no such CodeSystem")
}
