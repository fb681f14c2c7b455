"""Python client of the Stores API: see api_client.py and README.md."""
