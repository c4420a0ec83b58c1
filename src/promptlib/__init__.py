"""promptlib: a prompt library that behaves like software."""
