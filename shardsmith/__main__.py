from shardsmith.cli import entry

entry()
