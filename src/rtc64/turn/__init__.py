"""The pure TURN core (RFC 8656, RFC 6156, RFC 6062): allocations, permissions, channels,
lifetimes as deadlines, and the dispatch of decoded STUN messages."""
