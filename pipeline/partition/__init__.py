"""gstore.pipeline.partition"""
