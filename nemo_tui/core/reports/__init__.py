"""What the engine reports: metrics, troubleshooting advice, and the JSON shapes of both."""
