"""The lab's hosts: HostMonitor against a real node_exporter and fake servers on loopback."""
