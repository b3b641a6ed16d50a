"""Public TSP tunnel: stateless IPv6-over-UDP/IPv4 server and client (RFC 5572 profile)."""
