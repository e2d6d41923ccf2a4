"""HFX state package."""
