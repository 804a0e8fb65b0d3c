"""deepworks.models.autoencoder"""
