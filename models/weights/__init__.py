"""Weights: fetching the larger models once into the model folder (the manifest) and bundling
that folder for hosts without network. Imports only models' shared modules."""
