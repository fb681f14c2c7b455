"""Clients of the Stores API (Python package; the browser client is in js/)."""
