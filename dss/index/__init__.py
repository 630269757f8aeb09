"""Metadata indexing and search: bundle documents, the search backend, the indexer daemon."""
