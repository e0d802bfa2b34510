"""The lab's hosts: their model servers and memory, read over the network and retried with
backoff."""
