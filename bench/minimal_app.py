"""The minimal correct stack, the comparison of case 1 (issue 16).

What a careful tutorial would write for `GET /item/<id>`: Flask-JWT-Extended's
`jwt_required`, an in-memory revocation set, a check that the token's user still
exists and the item read with SQLAlchemy Core on SQLite, answered with plain
`jsonify`. Nothing else: no caching of its own, no logs, metrics or headers. It
reads the project's database and accepts the project's tokens (same secret,
issuer and audience), so both serve the same request.
"""

import os

from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, jwt_required
from sqlalchemy import create_engine, text

app = Flask(__name__)
app.config.update(
    JWT_SECRET_KEY=os.environ["JWT_SECRET_KEY"],
    JWT_DECODE_ISSUER=os.environ.get("JWT_ISSUER", "stores-api"),
    JWT_DECODE_AUDIENCE=os.environ.get("JWT_AUDIENCE", "stores-api"),
)
jwt = JWTManager(app)
engine = create_engine(os.environ["DATABASE_URL"])
revoked: set[str] = set()

USER = text("SELECT 1 FROM users WHERE id = :id")
ITEM = text("SELECT id, name, price, description, store_id FROM items WHERE id = :id")


@jwt.token_in_blocklist_loader
def is_revoked(_header: dict, payload: dict) -> bool:
    return payload["jti"] in revoked


@jwt.token_verification_loader
def user_exists(_header: dict, payload: dict) -> bool:
    with engine.connect() as connection:
        return connection.execute(USER, {"id": int(payload["sub"])}).first() is not None


@app.get("/item/<int:item_id>")
@jwt_required()
def item(item_id: int):
    with engine.connect() as connection:
        row = connection.execute(ITEM, {"id": item_id}).mappings().first()
    if row is None:
        return jsonify({"message": "Item not found."}), 404
    return jsonify(dict(row))


@app.get("/health")
def health():
    return jsonify({"status": "ok"})
