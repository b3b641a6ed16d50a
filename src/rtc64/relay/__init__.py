"""Media relay: the engine (ports, legs, latching, forwarding, stats) and its ng control."""
