"""shardsmith: compile Hydra-configured preprocessing graphs into sharded training sets."""

__version__ = "0.1.0"
