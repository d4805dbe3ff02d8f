"""Research diagnostics of trained workdirs, run from the repository root
(`python -m tools.<command>`); the library never imports them."""
