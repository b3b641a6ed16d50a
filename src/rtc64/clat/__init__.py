"""The CLAT orchestrator (464XLAT customer side, RFC 6877) for Linux hosts."""
