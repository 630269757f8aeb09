"""Storage: the blobstore interface, its cloud implementations, and the DSS objects kept in it."""
