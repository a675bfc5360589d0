"""gstore.pipeline.features"""
