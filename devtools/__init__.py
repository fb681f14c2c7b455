"""Tools for working on the project, shared by tests/ and bench/: never imported by
the application."""
