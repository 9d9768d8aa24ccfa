"""Training: synthetic data, the papers' losses, the trainer and `mattebox train`. Imports torch (never on the
server's classical path)."""
