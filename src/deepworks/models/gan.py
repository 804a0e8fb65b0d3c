"""deepworks.models.gan"""
