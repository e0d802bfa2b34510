"""Where Ollama listens, read from an `OLLAMA_HOST`-style value the way Ollama reads it.

Ollama itself never refuses a value: one it cannot use becomes the default address, with at most
a log line. A client that guessed the same way would quietly talk to the wrong place (or to no
place), so here a value that names no usable address is an error that says what is wrong.
"""

from __future__ import annotations

import ipaddress
import re

DEFAULT_URL = "http://127.0.0.1:11434"
_DEFAULT_PORT = 11434
ADDRESS_FORMS = "host[:port] or http(s)://host[:port][/path], such as 127.0.0.1:11434"
"""The accepted forms, for the fix part of an error message."""

_SCHEME_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_CHARACTERS = frozenset("?#\\")
"""Besides spaces and control characters: a query, a fragment or a backslash belong to no base
URL, and the first two would silently change the requests made under it."""
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\.?")
_MAX_HOSTNAME = 253
_PORT = re.compile(r"[0-9]{1,5}")


class InvalidOllamaHost(ValueError):
    """A value that names no address Ollama could be reached at.

    The message quotes the value, except that a user name and password are masked.
    """


def ollama_base_url(value: str | None) -> str:
    """The base URL to reach Ollama at, from an `OLLAMA_HOST`-style value.

    Follows Ollama's own parsing: surrounding spaces and quotes are stripped; no scheme means
    `http`; a bare host gets port 11434, `http://host` port 80, `https://host` port 443; the bare
    value `ollama.com` means `https://ollama.com:443`; IPv6 addresses may be bracketed; a path is
    kept. Like Ollama's own integrations, an unspecified bind address (`0.0.0.0`, `::`, an empty
    host) becomes loopback: a server listening on all interfaces is reached through loopback, and
    connecting to `0.0.0.0` fails on Windows.

    Where Ollama would fall back to a default, this refuses: a port that is not a number from 1 to
    65535, a scheme other than http or https, a value with no host after its scheme, a host that
    is neither a host name nor an IP address, user info (`user:password@`), spaces or control
    characters.

    Args:
        value: The value of `OLLAMA_HOST` or a configured URL; None or empty for the default.

    Raises:
        InvalidOllamaHost: the value names no usable address.
    """
    text = (value or "").strip().strip("'\"").strip()
    if not text:
        return DEFAULT_URL
    if "@" in text:
        # A password may itself hold `/` or `:`, so no part of the value is safe to echo but what
        # follows the last `@`.
        raise InvalidOllamaHost(
            f"{_mask_user_info(text)!r} holds a user name or password, which Ollama does not use"
        )
    bad = next(
        (c for c in text if c.isspace() or not c.isprintable() or c in _FORBIDDEN_CHARACTERS), None
    )
    if bad is not None:
        raise InvalidOllamaHost(f"{text!r} has a character an address cannot have: {bad!r}")
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest, default_port = "http", text, _DEFAULT_PORT
        if text == "ollama.com":
            scheme, rest = "https", "ollama.com:443"
    else:
        # Ollama picks the default port by the scheme as written and lowercases it only when it
        # connects, so `HTTP://host` means port 11434.
        default_port = _SCHEME_PORTS.get(scheme, _DEFAULT_PORT)
        scheme = scheme.lower()
        if scheme not in _SCHEME_PORTS:
            raise InvalidOllamaHost(f"{text!r} uses the scheme {scheme!r}, not http or https")
    host_port, _, path = rest.partition("/")
    if separator and not host_port:
        raise InvalidOllamaHost(f"{text!r} names no host")
    host, port_text = _split_host_port(host_port, text)
    port = _port(port_text, default_port, text)
    url = f"{scheme}://{_connectable_host(host, text)}:{port}"
    path = path.rstrip("/")
    return f"{url}/{path}" if path else url


def _mask_user_info(text: str) -> str:
    """The value with everything between its scheme and its last `@` replaced by `***`."""
    scheme, separator, rest = text.partition("://")
    if scheme.lower() not in _SCHEME_PORTS:
        scheme, separator, rest = "", "", text
    return f"{scheme}{separator}***@{rest.rpartition('@')[2]}"


def _split_host_port(host_port: str, text: str) -> tuple[str, str]:
    """Split `host:port`, `[address]:port`, a bare host or a bare IPv6 address; port may be ''."""
    if host_port.startswith("["):
        host, closed, after = host_port[1:].partition("]")
        if closed and (not after or after.startswith(":")):
            return host, after[1:]
        raise InvalidOllamaHost(f"{text!r} has an unclosed or misplaced '['")
    if host_port.count(":") > 1:
        # Several colons and no brackets: Ollama reads it as a bare IPv6 address, or nothing.
        return host_port, ""
    host, _, port = host_port.partition(":")
    return host, port


def _port(port_text: str, default_port: int, text: str) -> int:
    """The port number; an empty port (`host:`) means the default, as in a URL."""
    if not port_text:
        return default_port
    port = int(port_text) if _PORT.fullmatch(port_text) else 0
    if not 1 <= port <= 65535:
        raise InvalidOllamaHost(
            f"{text!r} has the port {port_text!r}, not a number from 1 to 65535"
        )
    return port


def _connectable_host(host: str, text: str) -> str:
    """The host as it goes into the URL: IP literals normalised and IPv6 bracketed, an
    unspecified bind address turned into loopback."""
    if not host:
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if _HOSTNAME.fullmatch(host) and len(host) <= _MAX_HOSTNAME:
            return host
        raise InvalidOllamaHost(
            f"{text!r} names {host!r}, neither a host name nor an IP address"
        ) from None
    if address.is_unspecified:
        address = ipaddress.ip_address("127.0.0.1" if address.version == 4 else "::1")
    return f"[{address}]" if address.version == 6 else str(address)
