// Starts Swagger UI from the settings the page carries in data attributes, so the
// page needs no inline script (see the Content-Security-Policy in core/hardening.py),
// with swagger-refresh.js keeping an OAuth 2.0 login's token fresh.
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui-container");
  var config = JSON.parse(container.dataset.config || "{}");
  config.url = container.dataset.specUrl;
  config.dom_id = "#swagger-ui-container";
  config.plugins = (config.plugins || []).concat([window.SwaggerRefresh.plugin]);
  config.requestInterceptor = window.SwaggerRefresh.requestInterceptor;
  window.ui = SwaggerUIBundle(config);
});
