"""rtc64 benchmarks: measured side by side with the anchors, never part of `make test`."""
