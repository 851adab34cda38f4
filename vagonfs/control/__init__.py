"""What the commands and the daemon both read: the control channel, the mount table, the status report's text."""
