"""gstore.pipeline.ingest"""
