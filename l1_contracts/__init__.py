"""HFX l1_contracts package."""
