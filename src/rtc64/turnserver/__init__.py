"""The TURN service: credentials, quotas, peer policy and the wiring of core and io."""
