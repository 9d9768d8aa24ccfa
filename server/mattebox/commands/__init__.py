"""CLI subcommands owned by the foundation (serve, matte, doctor)."""
