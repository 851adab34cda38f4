"""The mount daemon: its lifecycle, the FUSE adapter, the kernel's settings, the control server."""
