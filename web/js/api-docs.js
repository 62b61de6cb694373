// Starts Swagger UI on /api/docs with the OpenAPI document of this build. A file of its own,
// not an inline script: the gateway's pages allow scripts from the gateway only.
//
// The document is read from /api/docs/openapi.json, which needs no token. "Try it out" calls
// /api/v1 like the dashboard does: with the token the dashboard keeps for this tab, if any,
// unless one was entered with "Authorize".
(function () {
  'use strict';

  // The dashboard's key (web/js/api.js).
  const TOKEN_KEY = 'ferrocast.api-token';

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  window.ui = SwaggerUIBundle({
    url: '/api/docs/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    // No badge from validator.swagger.io: nothing on this page leaves the gateway.
    validatorUrl: null,
    // Not kept in localStorage: a token stays in this tab, as on the dashboard.
    persistAuthorization: false,
    requestInterceptor: function (req) {
      const token = storedToken();
      const headers = req.headers || {};
      if (token && !headers.Authorization && !headers.authorization) {
        headers.Authorization = 'Bearer ' + token;
        req.headers = headers;
      }
      return req;
    },
  });
})();
