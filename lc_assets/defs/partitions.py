"""Corpus shards: partitions of the corpus-side assets (a shard is a source, never a document)."""

import dagster as dg

CORPUS_SHARDS = "corpus_shards"

corpus_shards = dg.DynamicPartitionsDefinition(name=CORPUS_SHARDS)
