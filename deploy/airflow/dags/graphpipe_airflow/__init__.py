"""Helpers for the graphpipe DAG files (ignored by the DAG parser, see .airflowignore)."""
