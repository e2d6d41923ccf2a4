"""HFX challenger package."""
