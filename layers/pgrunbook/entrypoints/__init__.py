"""Entry points: the pgrunbook command and the Lambda handler, both thin over the operations."""
