"""nsfw: Yahoo open_nsfw. Imports models' shared modules and runtimes."""
