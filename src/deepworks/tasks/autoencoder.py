"""deepworks.tasks.autoencoder"""
