"""deepworks.models.vae"""
