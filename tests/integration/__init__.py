"""Integration tests: real servers and real models over real loopback sockets."""
