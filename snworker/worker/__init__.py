"""Everything that runs in the worker process and may touch a secret."""
