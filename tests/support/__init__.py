"""Test support: a real daemon as a child process, and a plain HTTP client."""
