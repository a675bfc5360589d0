"""gstore.pipeline: ingest, generate, partition, sampling, feature gather and the prefetching loader."""
