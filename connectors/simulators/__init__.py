"""Loopback HTTP servers that behave like the providers' APIs, for tests, trials and the demo."""
