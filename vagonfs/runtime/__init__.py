"""Runtime pieces every layer uses: supervision, worker threads, buffers, logging."""
