"""gstore.pipeline.generate"""
