"""gstore.pipeline.sampling"""
