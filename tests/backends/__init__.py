"""Unit tests of the HTTP backends against `httpx.MockTransport`; none opens a socket."""
