"""HFX node package."""
