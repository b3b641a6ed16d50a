"""RTP/RTCP core: header reading, reception statistics, relay-leg latching. No I/O."""
