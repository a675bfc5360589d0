"""gstore.pipeline.loader"""
