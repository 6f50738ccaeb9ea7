"""The seed tutorial's chat (seeds/000_*.txt), verbatim, as the benchmark's baseline."""
