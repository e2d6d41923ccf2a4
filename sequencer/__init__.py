"""HFX sequencer package."""
