"""The click command-line layer. Nothing outside this package imports click."""
