"""deepworks.models.dbn"""
