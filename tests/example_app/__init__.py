"""A small application built on snworker, tested against the stub as its authors would."""
