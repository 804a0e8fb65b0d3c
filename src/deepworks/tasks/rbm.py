"""deepworks.tasks.rbm"""
