"""Recognizers: one class per model, a registry of them, and device choice."""
