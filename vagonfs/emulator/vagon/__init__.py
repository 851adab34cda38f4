"""The Vagon Files API of the emulator: its model, pages, wire format, routes."""
