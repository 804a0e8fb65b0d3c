"""deepworks.tasks.adversarial"""
