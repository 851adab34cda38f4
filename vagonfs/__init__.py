"""vagonfs: mount Vagon Files, a tenant file store and Shannon workspaces with FUSE."""

__version__ = "0.1.0"
