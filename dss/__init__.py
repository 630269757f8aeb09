"""dss: a re-implementation of the Human Cell Atlas Data Storage System."""
