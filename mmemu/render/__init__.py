"""Text renderers: the formats of the kernel's and its tools' own outputs (no UI here)."""
