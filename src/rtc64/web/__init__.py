"""The web console, REST API and Prometheus metrics of ``rtc64 serve`` (a leaf: only the
command line and the composition root import it)."""
