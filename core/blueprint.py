"""The `Blueprint` every resource is made with: flask-smorest's, its
`@blp.arguments` reading JSON bodies through the app's provider
(core/json_provider.py: orjson, with its depth limit) instead of the standard
library's parser."""

from typing import Any

import flask_smorest
from flask import Request, current_app
from marshmallow import Schema
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, abort, is_json_request


class BodyParser(FlaskParser):
    """webargs' parser, reading JSON bodies through the app's provider."""

    def load_json(self, req: Request, schema: Schema) -> Any:
        """The JSON body, parsed as `request.get_json` would; none if empty."""
        # What webargs' own load_json does, with the provider instead of the
        # standard library (webargs lets a parser implement load_json itself).
        if not is_json_request(req):
            return webargs_core.missing
        data = req.get_data(cache=True)
        if not data:
            return webargs_core.missing
        try:
            return current_app.json.loads(data)
        except ValueError as exc:
            abort(400, exc=exc, messages={"json": ["Invalid JSON body."]})


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, its `@arguments` parsing bodies as above."""

    ARGUMENTS_PARSER = BodyParser()
