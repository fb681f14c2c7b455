"""One MethodView blueprint per resource."""
