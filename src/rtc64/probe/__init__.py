"""``rtc64 probe``: IPv6-readiness checks for SIP domains, TURN servers, web conferencing
sites and the local network (issue 13). A leaf: only the command line imports it, and it
never imports the gateway; it is a client of the world like a user's tool."""
