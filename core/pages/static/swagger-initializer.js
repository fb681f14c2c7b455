// Starts Swagger UI from the settings the page carries in data attributes, so the
// page needs no inline script (see the Content-Security-Policy in security.py).
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui-container");
  var config = JSON.parse(container.dataset.config || "{}");
  config.url = container.dataset.specUrl;
  config.dom_id = "#swagger-ui-container";
  window.ui = SwaggerUIBundle(config);
});
