"""Events: object-created records from both clouds, the queues that carry them, and the handlers' runners."""
