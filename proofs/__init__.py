"""HFX proofs package."""
