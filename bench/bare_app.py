"""The ceiling: a bare Flask app answering a constant JSON item, nothing else."""

from flask import Flask, jsonify

app = Flask(__name__)

ITEM = {
    "id": 1,
    "name": "Chair",
    "price": 15.99,
    "description": None,
    "store": {"id": 1, "name": "Corner shop"},
    "tags": [],
}


@app.get("/item/<int:item_id>")
def item(item_id: int):
    """One constant item."""
    return jsonify(ITEM)


@app.get("/health")
def health():
    """Readiness for the benchmark runner."""
    return jsonify({"status": "ok"})
