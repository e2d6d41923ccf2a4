"""End-to-end scenarios: every role its own process on anvil (harness: :mod:`tests.e2e.devnet`)."""
