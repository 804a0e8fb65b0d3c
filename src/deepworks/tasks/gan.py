"""deepworks.tasks.gan"""
