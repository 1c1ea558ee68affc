"""The compiler: config model -> graph IR -> passes -> physical plan -> execution.

>>> from shardsmith.compiler.config import ShardsmithConfig
>>> ShardsmithConfig().split.fractions
{'train': 0.9, 'valid': 0.05, 'test': 0.05}
"""
