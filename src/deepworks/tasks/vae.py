"""deepworks.tasks.vae"""
