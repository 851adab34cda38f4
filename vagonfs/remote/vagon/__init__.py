"""Vagon Files: the store, its signed API, listing pages, uploads, download URLs, names."""
