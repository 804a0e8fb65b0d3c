"""deepworks.models.rbm"""
