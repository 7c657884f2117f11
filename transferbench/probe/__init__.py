"""Per-layer probes: cheap predictions of the transfer curve (linear probe, linear CKA, LogME,
LEEP) computed from a study's trained base networks, set beside the measured curve."""
